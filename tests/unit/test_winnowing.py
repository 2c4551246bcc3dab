"""Winnowing fingerprints (grading/similarity.py): normalisation, rolling hash, windows."""

from cloudlab.grading import similarity as S

ORIGINAL = """def average(numbers):
    # the arithmetic mean
    total = 0
    for n in numbers:
        total += n
    return total / len(numbers)
"""
RENAMED = """def mean_of(xs):   # renamed, re-commented, re-spaced
    acc = 0

    for value in xs:
        acc   +=   value
    return acc / len(xs)
"""
OTHER = "def average(numbers):\n    return sum(numbers) / max(len(numbers), 1)\n"


def test_python_names_comments_and_spacing_are_ignored():
    assert S.normalise(ORIGINAL, "python") == S.normalise(RENAMED, "python")
    assert S.normalise(ORIGINAL, "python") != S.normalise(OTHER, "python")


def test_yaml_order_quoting_comments_and_names_are_ignored():
    a = "# web\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: 80}]\n"
    b = 'spec:\n  ports:\n    - port: 80\nmetadata:\n  name: "site"  # renamed\nkind: "Service"\n'
    assert S.normalise(a, "yaml") == S.normalise(b, "yaml")
    assert S.normalise(a, "yaml") != S.normalise(a.replace("80", "81"), "yaml")


def test_dockerfiles_ignore_comments_case_and_line_continuations():
    a = "FROM python:3.11-slim\nRUN pip install a b\nCMD [\"x\"]\n"
    b = "# base\nfrom python:3.11-slim\nrun pip install \\\n    a b\ncmd [\"x\"]\n"
    assert S.normalise(a, "dockerfile") == S.normalise(b, "dockerfile")


def test_the_rolling_hash_equals_hashing_each_kgram_afresh():
    tokens = S.normalise(ORIGINAL, "python")
    rolled = S.kgram_hashes(tokens, 5)
    fresh = [S.kgram_hashes(tokens[i:i + 5], 5)[0] for i in range(len(tokens) - 4)]
    assert rolled == fresh and len(set(rolled)) > 1


def test_winnowing_keeps_the_minimum_of_each_window():
    # the worked example of Schleimer et al. (2003), Fig. 2: fingerprints 17 17 8 39 17
    hashes = [77, 74, 42, 17, 98, 50, 17, 98, 8, 88, 67, 39, 77, 74, 42, 17, 98]
    assert S.winnow(hashes, 4) == {17, 8, 39}
    assert S.winnow([5, 1, 1, 5], 2) == {1}
    assert S.winnow([3, 9, 4, 8, 2], 2) == {3, 4, 2}, "each window's minimum, no other value"
    assert S.winnow([], 4) == set()


def test_a_long_shared_run_is_always_fingerprinted_in_both():
    shared = " ".join(f"x{i} = {i}\n" for i in range(20))
    a = S.fingerprints("import os\n" + shared, "text")
    b = S.fingerprints(shared + "print(1)\n", "text")
    assert a & b, "a run longer than K + WINDOW - 1 tokens must share a fingerprint"


def test_common_code_and_small_overlaps_are_not_reported():
    subs = {"a": {"q": (ORIGINAL, "python")}, "b": {"q": (RENAMED, "python")}}
    assert [p.a + p.b for p in S.compare(subs, min_shared=1)] == ["ab"]
    assert S.compare(subs, [{"q": (ORIGINAL, "python")}], min_shared=1) == [], \
        "what the release or the solution holds is no evidence"
    assert S.compare(subs) == [], "too few shared fingerprints to say anything"
