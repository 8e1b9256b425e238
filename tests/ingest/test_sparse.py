from ingest.stages.sparse import SparseEncoder, term_id, terms


def test_english_terms_lowercased_without_stop_words() -> None:
    assert terms("The Pump and the XJ-900 seal") == ["pump", "xj-900", "seal"]


def test_japanese_becomes_character_bigrams() -> None:
    assert terms("品質管理") == ["品質", "質管", "管理"]
    assert terms("品") == ["品"]


def test_term_ids_are_stable_across_processes() -> None:
    # crc32 is fixed by definition (not salted like hash()): no vocabulary has to be shared
    assert term_id("pump") == 0x9817B1ED
    assert term_id("pump") != term_id("seal")


def test_document_weights_saturate_and_query_is_binary() -> None:
    enc = SparseEncoder()
    doc = enc.encode_document("seal seal seal seal pump")
    weights = dict(zip(doc.indices, doc.values, strict=True))
    assert weights[term_id("seal")] > weights[term_id("pump")]
    assert weights[term_id("seal")] < 4 * weights[term_id("pump")]
    assert list(doc.indices) == sorted(doc.indices)
    query = enc.encode_query("seal pump seal")
    assert sorted(query.indices) == sorted([term_id("seal"), term_id("pump")])
    assert set(query.values) == {1.0}
