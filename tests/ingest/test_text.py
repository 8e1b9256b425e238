from ingest.text import is_cjk, join_pieces, normalize_space, split_sentences


def test_japanese_sentences_end_at_japanese_punctuation() -> None:
    text = "検査は毎日行います。不良品は止めます！本当ですか？はい。"
    assert split_sentences(text) == [
        "検査は毎日行います。",
        "不良品は止めます！",
        "本当ですか？",
        "はい。",
    ]


def test_closing_quote_stays_with_its_sentence() -> None:
    assert split_sentences("「準備完了。」と言った。次です。") == [
        "「準備完了。」と言った。",
        "次です。",
    ]


def test_english_sentences_split_at_punctuation_and_space() -> None:
    assert split_sentences("The pump failed. Version 1.2 is out! Really?") == [
        "The pump failed.",
        "Version 1.2 is out!",
        "Really?",
    ]


def test_join_pieces_adds_no_space_between_cjk() -> None:
    assert join_pieces(["検査します。", "記録します。"]) == "検査します。記録します。"
    assert join_pieces(["One.", "Two."]) == "One. Two."


def test_is_cjk_and_normalize_space() -> None:
    assert is_cjk("品質管理 manual")
    assert not is_cjk("quality manual 品")
    assert normalize_space("  a   b \n\n  c\t d ") == "a b\nc d"
