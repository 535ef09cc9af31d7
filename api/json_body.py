"""The body of POST /v1/batches, read without building it whole: its options as any JSON,
its problems one element at a time and each checked like a line of a JSONL file. A
100,000-problem body then costs about twice its own size in memory (the bytes and their
text), not the tenfold of a parsed list of dicts.

The problems may come before or after the options in the object, so a first pass finds
where each element ends (decoding it, nothing kept) and a second decodes them for good."""

import json
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ttcq.api.datasets import decode_json, json_record
from ttcq.api.records import DatasetError, ErrorLog, LineError, Record

PROBLEMS = "problems"
_SPACE = re.compile(r"[ \t\n\r]*")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_scanner = json.JSONDecoder()  # permissive: this pass only finds where an element ends


class BodyError(ValueError):
    """The body is not a JSON object this endpoint can read; field names the key."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass
class Submission:
    text: str
    options: dict[str, Any] = field(default_factory=dict)
    spans: array = field(default_factory=lambda: array("q"))  # start, end of each problem
    has_problems: bool = False

    def problems(self, errors: ErrorLog) -> Iterator[Record]:
        """The problems as (1-based position, object), bad ones reported to errors."""
        for index in range(len(self.spans) // 2):
            start, end = self.spans[2 * index], self.spans[2 * index + 1]
            value = json_record(index + 1, self.text[start:end], errors)
            if value is not None:
                yield index + 1, value


def read_submission(body: bytes) -> Submission:
    """Options decoded, problems located; raises BodyError or DatasetError (an element
    that is not JSON: the elements after it cannot be told apart)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BodyError(f"the body is not UTF-8 (bad byte at offset {error.start})") from None
    submission = Submission(text)
    pos = _expect(text, _skip(text, 0), "{")
    while text[pos:pos + 1] != "}":
        key, pos = _key(text, pos)
        pos = _skip(text, _expect(text, pos, ":"))
        if key == PROBLEMS:
            pos = _locate_problems(submission, pos)
        else:
            submission.options[key], pos = _option(text, pos, key)
        pos = _skip(text, pos)
        if text[pos:pos + 1] == ",":
            pos = _skip(text, pos + 1)
        elif text[pos:pos + 1] != "}":
            raise BodyError(f"malformed JSON body: expected ',' or '}}' at offset {pos}")
    if _skip(text, pos + 1) != len(text):
        raise BodyError("extra data after the JSON object")
    return submission


def _skip(text: str, pos: int) -> int:
    end = _SPACE.match(text, pos)
    return end.end() if end else pos


def _expect(text: str, pos: int, char: str) -> int:
    if text[pos:pos + 1] != char:
        raise BodyError(f"malformed JSON body: expected {char!r} at offset {pos}")
    return pos + 1


def _key(text: str, pos: int) -> tuple[str, int]:
    try:
        key, end = _scanner.raw_decode(text, pos)
    except ValueError:
        key, end = None, pos
    if not isinstance(key, str):
        raise BodyError(f"malformed JSON body: expected a key at offset {pos}")
    return key, end


def _option(text: str, pos: int, key: str) -> tuple[Any, int]:
    end = _value_end(text, pos)
    if end is None:
        raise BodyError(f"malformed JSON body at offset {pos}", key)
    try:
        return decode_json(text[pos:end]), end
    except ValueError as error:
        raise BodyError(f"malformed JSON: {error}", key) from None


def _locate_problems(submission: Submission, pos: int) -> int:
    text, spans = submission.text, array("q")
    if text[pos:pos + 1] != "[":
        raise BodyError("problems must be a JSON array of objects", PROBLEMS)
    pos = _skip(text, pos + 1)
    while text[pos:pos + 1] != "]":
        end = _value_end(text, pos)
        if end is None:
            message = f"malformed JSON at offset {pos}; the problems after it were not read"
            raise DatasetError([LineError(len(spans) // 2 + 1, None, message)])
        spans.extend((pos, end))
        pos = _skip(text, end)
        if text[pos:pos + 1] == ",":
            pos = _skip(text, pos + 1)
        elif text[pos:pos + 1] != "]":
            raise BodyError(f"malformed JSON body: expected ',' or ']' at offset {pos}",
                            PROBLEMS)
    submission.spans, submission.has_problems = spans, True
    return pos + 1


def _value_end(text: str, pos: int) -> int | None:
    """Where the JSON value at pos ends, or None if it is not JSON. Values too deep to
    decode are followed bracket by bracket."""
    try:
        return int(_scanner.raw_decode(text, pos)[1])
    except RecursionError:
        return _bracketed_end(text, pos)
    except ValueError:
        return None


def _bracketed_end(text: str, pos: int) -> int | None:
    depth = 0
    for token in _TOKEN.finditer(text, pos):
        mark = token.group()
        if mark in "[{":
            depth += 1
        elif mark in "]}":
            depth -= 1
            if depth == 0:
                return token.end()
    return None
