"""A synthetic task whose answer statistics are known, with TEST DOUBLES of an engine and a
verifier that play it, and reference values of what each search strategy should score.

The model (lab.ground_truth.task): a problem states its own parameters in its text — the
probability p that a step written from a sound prefix is sound, the number of steps L, the
gold answer and the wrong answers with their weights. A solution is L steps; each step
taken from a sound prefix is sound with probability p, and once a step slips the rest of
the solution is unsound. A sound solution ends with the gold answer, an unsound one with a
wrong answer drawn from the weights. So one sample is right with probability p**L, and
problems of mixed difficulty are problems with different p.

- GroundTruthEngine (engine.py) implements worker.engines.base.Engine, so the real
  strategies, the worker and the storage run on it unchanged; it also answers the
  self-judge verifier's yes/no question with GroundTruthVerifier's score.
- GroundTruthVerifier (verifier.py) implements worker.verifiers.base.Verifier: a PRM whose
  score of a sound step is Beta(q, 1) and of an unsound one Beta(1, q), q the quality.
- thought.py: with a thinking format on, the engine writes a thought of attempts that
  each solve with p**L and close after a geometric number, then the answer;
  simulate_forcing.py is budget forcing's numpy reference on it, simulate_probing.py
  answer probing's (majority and DeepConf).
- reference.py (exact: majority, best-of-N, weighted best-of-N) and simulate.py (Monte
  Carlo written from the model alone: beam search, lookahead, DVTS) say what each
  strategy's accuracy should be; they share no code with worker.search.
"""
