"""Scorers against hand-worked examples of the upstream definitions (see olmpool.eval.scoring)."""

import math

import pytest

from olmpool.eval import scoring as S


def test_string_match_all_hand_example():
    # sample 1: 2 of 3 references found (case-insensitive) -> 2/3; sample 2: 1 of 1 -> 1
    preds = ["The numbers are 123 and ABC", "xyz"]
    refs = [["123", "abc", "999"], ["XYZ"]]
    assert S.string_match_all(preds, refs) == pytest.approx((2 / 3 + 1) / 2 * 100)


def test_string_match_part_hand_example():
    # any reference found: sample 1 yes, sample 2 no, sample 3 yes
    preds = ["Paris, France", "London", "it is berlin"]
    refs = [["paris", "lyon"], ["Rome"], ["Berlin"]]
    assert S.string_match_part(preds, refs) == pytest.approx(200 / 3)


def test_ruler_postprocess_replaces_control_characters():
    assert S.ruler_postprocess("  ab\tc\x01d  ") == "ab\nc\nd"


def test_normalize_and_em():
    assert S.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert S.normalize_answer("An apple a day") == "apple day"
    assert S.exact_match("the Eiffel Tower.", ["Eiffel Tower"]) == 1.0
    assert S.exact_match("Eiffel Tower in Paris", ["Eiffel Tower"]) == 0.0
    assert S.substring_exact_match("It is the Eiffel Tower in Paris", ["eiffel tower", "louvre"]) == 1.0
    assert S.substring_exact_match("Louvres", [["nothing"], ["tower"]]) == 0.0


def test_parse_output():
    assert S.parse_output("label: 12\nlabel: 3", "label:") == "12"
    assert S.parse_output(" 7 apples\nmore", "label:") == "7 apples"
    assert S.parse_output("Answer: Answer: Paris\n", "Answer:") == "Paris"


def test_parse_rankings_longest_chain():
    out = S.parse_rankings("Ranking: [ID: 3] > [ID: 1] > 2 and also 9 > 8")
    assert out == {"3": 3, "1": 2, "2": 1}
    assert S.parse_rankings("no numbers here") == {"no numbers here": 1}
    assert S.parse_rankings("5 > 5 > 4") == {"5": 3, "4": 1}


def test_ndcg_at_10_hand_example():
    # ranked: a (rel 2), b (rel 0), c (rel 1); ideal: 2, 1
    scores = {"a": 3, "b": 2, "c": 1}
    qrels = {"a": 2, "b": 0, "c": 1, "d": 0}
    dcg = 2 / math.log2(2) + 0 + 1 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert S.ndcg_at_k(scores, qrels, 10) == pytest.approx(dcg / idcg)
    assert S.ndcg_at_k({"c": 2, "a": 1}, qrels, 1) == pytest.approx(1 / 2)
    assert S.ndcg_at_k({"x": 1}, {"x": 0}, 10) == 0.0


def test_recall_fraction():
    assert S.recall_fraction("values 11, 22", ["11", "22", "33", "44"]) == 0.5


def test_bits_per_byte_hand_example():
    # log p = -ln(2) * 6 nats over a 3-byte answer -> 2 bits per byte; UTF-8 bytes, not characters
    assert S.bits_per_byte(-6 * math.log(2), "abc") == pytest.approx(2.0)
    assert S.bits_per_byte(-4 * math.log(2), "é") == pytest.approx(2.0)  # 2 bytes


def test_mean_missing_propagates():
    assert S.mean([1.0, 3.0]) == 2.0
    assert math.isnan(S.mean([1.0, float("nan")]))
    assert math.isnan(S.mean([]))
