"""Generation stops a row where its answer_json object closes: nothing after the object is generated,
rows of a batch finish on their own, and an answer that ended at end-of-sequence is unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from kit.evaluate.runner import generate
from kit.evaluate.stopping import JsonObjectEnd

PAD, EOS = 0, 1


def closes_at(text: str) -> int | None:
    """Characters fed, one at a time, until JsonObjectEnd says the object closed (None: never)."""
    scanner = JsonObjectEnd()
    for i, ch in enumerate(text):
        if scanner.feed(ch):
            return i + 1
    return None


@pytest.mark.parametrize("text, end", [
    ('{"a": 1} junk', 8),
    ('Sure! Here it is: {"a": {"b": [1, {"c": 2}]}}\n```', 45),
    ('{"text": "a } and a { in a string"} after', 35),
    ('{"text": "an escaped quote \\" } still inside"} after', 46),
    ('{"text": "a backslash at the end \\\\"} after', 37),
    ('{"unclosed": [1, 2', None),
    ("no object at all }", None),
])
def test_the_object_closes_where_its_braces_balance_outside_strings(text, end):
    assert closes_at(text) == end
    if end is not None:
        assert text[end - 1] == "}"


# ---- a scripted model through transformers' own generate loop ----------------------------------

class ScriptConfig(PretrainedConfig):
    model_type = "kit-scripted"


class ScriptedLM(PreTrainedModel, GenerationMixin):
    """Emits, greedily, a fixed token script per row; the row is recognised by its prompt token."""
    config_class = ScriptConfig

    def __init__(self, scripts: dict[int, list[int]]):
        super().__init__(ScriptConfig(vocab_size=256, eos_token_id=EOS, pad_token_id=PAD, num_hidden_layers=1))
        self.scripts = scripts
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        if input_ids.shape[1] == attention_mask.shape[1]:  # the prompt: find out which rows these are
            self.rows = [self.scripts[int(row[row != PAD][0])] for row in input_ids]
            self.width = input_ids.shape[1]
        step = attention_mask.shape[1] - self.width
        self.calls += 1
        logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], self.config.vocab_size)
        for i, script in enumerate(self.rows):
            logits[i, -1, script[step] if step < len(script) else EOS] = 1.0
        return CausalLMOutputWithPast(logits=logits)


class PieceTokenizer:
    """Token ids are text pieces; a row's prompt is its row number as one token, repeated."""
    eos_token_id, pad_token_id = EOS, PAD

    def __init__(self):
        self.pieces = {PAD: "<pad>", EOS: "<eos>"}

    def ids(self, pieces: list[str]) -> list[int]:
        out = []
        for p in pieces:
            if p == "<eos>":
                out.append(EOS)
                continue
            token = next((i for i, q in self.pieces.items() if q == p), None)
            if token is None:
                token = len(self.pieces) + 20
                self.pieces[token] = p
            out.append(token)
        return out

    def apply_chat_template(self, turns, add_generation_prompt=True, tokenize=False):
        return turns[-1]["content"]

    def __call__(self, text, add_special_tokens=False):
        row, width = text.split(":")
        return {"input_ids": [2 + int(row)] * int(width)}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(self.pieces[i] for i in ids if not (skip_special_tokens and i in (PAD, EOS)))


SCRIPTS = [  # (pieces the model would write, the answer kit eval keeps)
    (['{"text": "', "a } brace", ' and \\"', '{ quote"', ', "n": {', '"m": 1', "}", "}", " and then", " junk", "<eos>"],
     '{"text": "a } brace and \\"{ quote", "n": {"m": 1}}'),
    (["Sure: ", '{"x": ', "1}", "<eos>"], 'Sure: {"x": 1}'),  # ended at end-of-sequence right after it
    (['{"a": [', "1", ", 2", ", 3", ", 4", ", 5", ", 6", ", 7", ", 8", ", 9"], '{"a": [1, 2, 3, 4, 5, 6, 7'),
    (["no json here", "<eos>"], "no json here"),
    (['{"k": 1', "}\n", "More text."], '{"k": 1}\n'),
]


def scripted(max_prompt: int = 3):
    tok = PieceTokenizer()
    scripts = {2 + i: tok.ids(pieces) for i, (pieces, _) in enumerate(SCRIPTS)}
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"{i}:{1 + i % max_prompt}"}]}
            for i in range(len(SCRIPTS))]
    return ScriptedLM(scripts), tok, rows


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_each_row_stops_where_its_object_closes_whatever_the_batch(batch_size):
    net, tok, rows = scripted()
    texts, new_tokens = generate(net, tok, rows, batch_size, max_new_tokens=8, device="cpu")
    assert texts == [answer for _, answer in SCRIPTS]
    # generated tokens: 8 (closed), 3 (closed; its end-of-sequence is never generated), 8 (cut at max_new_tokens),
    # 2 (its end-of-sequence), 2 (closed by "}\n")
    assert new_tokens == 8 + 3 + 8 + 2 + 2


def test_generation_ends_as_soon_as_every_row_is_done():
    net, tok, rows = scripted()
    generate(net, tok, rows[:2], 2, max_new_tokens=50, device="cpu")
    assert net.calls == 8  # the longest of the two rows, not 50


def test_an_answer_that_ended_at_end_of_sequence_is_the_same_with_and_without_the_stop():
    net, tok, rows = scripted()
    texts, _ = generate(net, tok, rows, 5, max_new_tokens=8, device="cpu")
    ids = torch.tensor([[2 + i] * 3 for i in range(len(rows))])
    plain = net.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12,
                         eos_token_id=EOS, pad_token_id=PAD)
    unstopped = [tok.decode(row) for row in plain[:, 3:].tolist()]
    assert texts[1] == unstopped[1] == 'Sure: {"x": 1}' and texts[3] == unstopped[3]
    assert unstopped[0].endswith(" and then junk")  # what the stop saved: it would have made the answer invalid


# ---- the tiny recipe's model, with the real tokenizer ------------------------------------------

def test_the_tiny_model_gives_the_same_answers_as_a_plain_greedy_generation_cut_at_the_object():
    from transformers import OlmoConfig, OlmoForCausalLM

    from kit.data.rows import encode_prompt, read_rows
    from kit.data.tokenizer import load_default_tokenizer
    from kit.recipe import load_recipe

    loaded = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml")
    torch.manual_seed(0)
    net = OlmoForCausalLM(OlmoConfig(**loaded.recipe.model.config)).eval()
    tok = load_default_tokenizer()
    rows = read_rows(loaded.resolve(loaded.recipe.data.eval))[:2]
    texts, new_tokens = generate(net, tok, rows, 2, max_new_tokens=16, device="cpu")
    assert generate(net, tok, rows, 1, max_new_tokens=16, device="cpu") == (texts, new_tokens)
    for row, text in zip(rows, texts):
        prompt = torch.tensor([encode_prompt(tok, row["messages"])])
        plain = net.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                             max_new_tokens=16, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        tokens = plain[0, prompt.shape[1]:].tolist()
        scanner, kept = JsonObjectEnd(), []
        for t in tokens:
            kept.append(t)
            if t == tok.eos_token_id or scanner.feed(tok.decode([t])):
                break
        assert text == tok.decode(kept, skip_special_tokens=True)
