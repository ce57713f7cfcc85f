"""Stop generating a row once its answer_json object is closed.

An answer is one JSON object and nothing else (docs/metrics.md), so every token after the object's
closing brace can only make it invalid: generation stops there, for each row on its own, and
max_new_tokens can be as long as the longest answer without costing time on the short ones.

The rule is a function of the generated token ids alone (greedy decoding stays deterministic): a
row is done at its end-of-sequence token, or at the token that brings the brace depth, counted
outside JSON strings from the row's first `{`, back to zero. transformers pads a finished row
while the others go on, so rows of one batch finish independently.
"""

from __future__ import annotations

STOP_RULE = "eos, or the token that closes the first top-level JSON object"


class JsonObjectEnd:
    """Reads text as it is generated; `feed` is true once the first top-level object has closed."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = self.escaped = self.closed = False

    def feed(self, text: str) -> bool:
        for ch in text:
            if self.closed:
                break
            if self.depth == 0:  # before the object: prose or a code fence, not JSON yet
                self.depth = 1 if ch == "{" else 0
            elif self.in_string:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == '"':
                    self.in_string = False
            elif ch == '"':
                self.in_string = True
            elif ch in "{}":
                self.depth += 1 if ch == "{" else -1
                self.closed = self.depth == 0
        return self.closed


class StopAtJsonEnd:
    """A transformers stopping criterion for one left-padded batch whose prompts are `prompt_width`
    tokens wide. `new_tokens[i]` counts row i's generated tokens up to and including its last one
    (the end-of-sequence token, or the one that closed the object)."""

    def __init__(self, tokenizer, prompt_width: int, rows: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_width = prompt_width
        self.seen = 0  # generated columns already read
        self.scanners = [JsonObjectEnd() for _ in range(rows)]
        self.done = [False] * rows  # finished: by end-of-sequence or by the closed object
        self.closed = [False] * rows  # finished by the closed object (what this criterion reports)
        self.new_tokens = [0] * rows
        self._pieces: dict[int, str] = {}

    def _piece(self, token: int) -> str:
        if token not in self._pieces:
            # one token's text: braces, quotes and backslashes are single bytes, never split across tokens
            self._pieces[token] = self.tokenizer.decode([token], skip_special_tokens=True)
        return self._pieces[token]

    def __call__(self, input_ids, scores=None, **kwargs):
        import torch

        fresh = input_ids[:, self.prompt_width + self.seen:].tolist()
        self.seen += len(fresh[0]) if fresh else 0
        for i, tokens in enumerate(fresh):
            for token in tokens:
                if self.done[i]:
                    break
                self.new_tokens[i] += 1
                if token == self.tokenizer.eos_token_id:
                    self.done[i] = True
                elif self.scanners[i].feed(self._piece(token)):
                    self.done[i] = self.closed[i] = True
        return torch.tensor(self.closed, dtype=torch.bool, device=input_ids.device)
