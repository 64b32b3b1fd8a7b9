"""The zoo page's notebook logic (effdepth.chapters.zoo): which models, whether to train, its labels
and its sentences (worded by effdepth.zoo.book from the reports)."""

from effdepth import zoo
from effdepth.chapters import zoo as Z


def test_the_page_shows_the_models_asked_for_else_the_whole_zoo():
    assert Z.model_names(["small"]) == ["small"]
    assert Z.model_names(None) == list(zoo.MODELS)


def test_missing_models_are_trained_only_when_asked(monkeypatch):
    trained = []
    monkeypatch.setattr(zoo, "train_all", lambda names, progress=True: trained.append(list(names)))
    Z.prepare(["a", "b"], train_missing=False)
    assert trained == []
    Z.prepare(["a", "b"], train_missing=True)
    assert trained == [["a", "b"]]


def test_labels_and_lines():
    assert Z.made_by(["shallow", "default", "deep"]) == "the zoo: shallow, default, deep"
    assert Z.bullets("a: one\nb: two") == "- a: one\n- b: two"
    assert Z.versions_line().startswith("torch ") and "Python 3." in Z.versions_line()
    assert Z.cache_line().startswith("zoo cache: $EFFDEPTH_CACHE/zoo; default model: ") and " -> " in Z.cache_line()


def test_findings_hand_the_reports_sentences_to_the_page(monkeypatch):
    monkeypatch.setattr(Z.zb, "training_time_text", lambda names: f"took {len(names)}")
    monkeypatch.setattr(Z.zb, "skill_notice", lambda names: "**a lacks it**")
    monkeypatch.setattr(Z.zb, "learned_summary", lambda names: "a: x\nb: y")
    monkeypatch.setattr(Z.zb, "reading", lambda names: "- r")
    f = Z.findings(["a", "b"])
    assert f.text == {
        "training_time_text": "took 2",
        "skill_text": "**a lacks it**",
        "learned_text": "- a: x\n- b: y",
        "reading_text": "- r",
    }
