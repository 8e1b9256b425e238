"""unstructured must never reach for its spaCy download: the fallback answers instead."""

import pytest

from ingest import nlp_fallback


@pytest.fixture(scope="module")
def installed() -> str:
    return nlp_fallback.install()


def test_fallback_is_used_when_the_spacy_model_is_missing(installed: str) -> None:
    if nlp_fallback.spacy_model_installed():
        assert installed == "spaCy en_core_web_sm"
    else:
        assert installed == nlp_fallback.FALLBACK


def test_unstructured_classifies_text_without_a_download(installed: str, monkeypatch) -> None:
    import unstructured.nlp.tokenize as tokenize
    from unstructured.partition.text_type import is_possible_narrative_text, is_possible_title

    def no_download() -> None:
        raise AssertionError("unstructured tried to download its spaCy model")

    monkeypatch.setattr(tokenize, "_install_spacy_model", no_download)
    tokenize._process_cached.cache_clear()
    assert is_possible_narrative_text("The pump failed because the seal was worn out.")
    assert not is_possible_narrative_text("Quarterly Report")
    assert is_possible_title("Quarterly Report")


def test_fallback_splits_sentences_and_tags_verbs() -> None:
    nlp = nlp_fallback.build_fallback()
    doc = nlp("The seal failed. It was replaced! 検査は毎日行います。記録します。")
    assert len(list(doc.sents)) == 4
    tags = {t.text: t.tag_ for t in doc}
    assert tags["failed"] == "VB"
    assert tags["was"] == "VB"
    assert tags["seal"] == "NN"
