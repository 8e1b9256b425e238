from ingest.models import Element
from ingest.stages.chunk import ChunkOptions, DocumentChunker

JA_SENTENCE = "溶接ロボットの校正は毎週月曜日に品質保証部が実施します。"


def chunker(counter, max_tokens: int = 64) -> DocumentChunker:
    return DocumentChunker(counter, ChunkOptions(max_tokens=max_tokens))


def test_every_chunk_fits_the_token_limit(token_counter) -> None:
    words = " ".join(f"word{i} is here." for i in range(400))
    elements = [
        Element("title", "Intro"),
        Element("text", words),
        Element("text", JA_SENTENCE * 30),
    ]
    chunks = chunker(token_counter).run(elements)
    assert len(chunks) > 5
    assert all(token_counter.count(c.text) <= 64 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_title_is_kept_with_the_text_under_it(token_counter) -> None:
    elements = [
        Element("text", "Preface text that belongs to no section. " * 6),
        Element("title", "Maintenance"),
        Element("text", "Replace the seal every six months."),
    ]
    chunks = chunker(token_counter, 50).run(elements)
    with_title = [c for c in chunks if "Maintenance" in c.text]
    assert len(with_title) == 1
    assert "Replace the seal" in with_title[0].text
    assert with_title[0].section == "Maintenance"
    assert chunks[0].section is None


def test_title_alone_never_ends_a_chunk(token_counter) -> None:
    long_text = "The bearing temperature is logged hourly. " * 20
    chunks = chunker(token_counter, 40).run(
        [Element("title", "Bearings"), Element("text", long_text)]
    )
    assert chunks[0].text.startswith("Bearings\nThe bearing")
    assert all(c.section == "Bearings" for c in chunks)


def test_small_table_stays_whole(token_counter) -> None:
    rows = (("part", "qty"), ("bolt", "4"), ("nut", "8"))
    chunks = chunker(token_counter).run([Element("table", "part qty bolt 4 nut 8", rows=rows)])
    assert len(chunks) == 1
    assert chunks[0].kind == "table"
    assert chunks[0].text == "part | qty\nbolt | 4\nnut | 8"


def test_big_table_is_split_by_rows_with_its_header(token_counter) -> None:
    rows = (("part number", "description", "supplier"),) + tuple(
        (f"P-{i:04d}", f"stainless bracket type {i}", f"Vendor {i % 7}") for i in range(120)
    )
    chunks = chunker(token_counter, 60).run([Element("table", "x", rows=rows)])
    assert len(chunks) > 3
    for c in chunks:
        assert c.kind == "table"
        assert c.text.splitlines()[0] == "part number | description | supplier"
        assert token_counter.count(c.text) <= 60
    body_rows = [line for c in chunks for line in c.text.splitlines()[1:]]
    assert body_rows == [" | ".join(r) for r in rows[1:]]  # every row once, in order


def test_japanese_text_splits_at_sentence_ends(token_counter) -> None:
    chunks = chunker(token_counter, 48).run([Element("text", JA_SENTENCE * 12)])
    assert len(chunks) > 1
    for c in chunks:
        assert c.text.endswith("。")
        assert " " not in c.text  # no spaces invented between Japanese sentences
    assert "".join(c.text for c in chunks) == JA_SENTENCE * 12


def test_one_overlong_sentence_is_cut_at_token_boundaries(token_counter) -> None:
    text = " ".join(f"token{i}" for i in range(300))  # no sentence end at all
    chunks = chunker(token_counter, 32).run([Element("text", text)])
    assert all(token_counter.count(c.text) <= 32 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == text.split()


def test_page_numbers_follow_their_elements(token_counter) -> None:
    elements = [
        Element("text", "First page text.", page_number=1),
        Element("text", "Second page text.", page_number=2),
    ]
    chunks = chunker(token_counter).run(elements)
    assert chunks[0].page_numbers == (1, 2)
    assert chunks[0].page_number == 1
