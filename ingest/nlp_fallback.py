"""Offline stand-in for the spaCy model that unstructured downloads at run time.

unstructured classifies text (title vs. narrative) with spaCy's ``en_core_web_sm``. When that model
is not installed it downloads it from the internet the first time it is needed: on a closed
network that is a hang, or for PDFs a silently empty result. ``install()`` points unstructured at
the real model when it is installed and otherwise at a small rule-based pipeline: a tokenizer, a
sentencizer that knows 。！？, and a verb tagger that covers unstructured's "contains a verb" test.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

FALLBACK = "shareindex rule-based fallback"
_COMPONENT = "shareindex_verb_tagger"

_VERBS = frozenset(
    """
    am is are was were be been being has have had having do does did done can could will would
    shall should may might must need needs go goes went make makes made take takes took get gets
    got see sees saw use uses used find finds found give gives gave tell tells told work works
    call calls try tries ask asks feel feels become becomes leave leaves put puts mean means keep
    keeps let lets begin begins seem seems help helps show shows hear hears run runs hold holds
    bring brings write writes provide provides sit sits stand stands lose loses pay pays meet
    meets include includes continue continues set sets learn learns change changes lead leads
    understand understands follow follows stop stops create creates speak speaks read reads
    allow allows add adds spend spends grow grows open opens walk walks win wins offer offers
    remember remembers consider considers appear appears buy buys wait waits serve serves die
    dies send sends expect expects build builds stay stays fall falls cut cuts reach reaches
    remain remains suggest suggests raise raises pass passes sell sells require requires report
    reports decide decides describes describe contains contain says say know knows think thinks
    """.split()
)
_VERB_SUFFIX = re.compile(r"^[a-z]{3,}(ed|ing)$")
# Japanese predicates end a clause with these (polite and plain forms).
_JA_VERB = re.compile(
    r"(ます|ました|です|でした|する|した|される|された|ある|いる|なる|った|って)[。！？]?$"
)


def _is_verb(word: str) -> bool:
    lower = word.lower()
    return lower in _VERBS or bool(_VERB_SUFFIX.match(lower)) or bool(_JA_VERB.search(word))


def spacy_model_installed() -> bool:
    return importlib.util.find_spec("en_core_web_sm") is not None


def build_fallback() -> Any:
    """A spaCy pipeline that needs no downloaded weights."""
    import spacy
    from spacy.language import Language
    from spacy.util import compile_infix_regex, compile_suffix_regex

    if _COMPONENT not in Language.factories:

        @Language.component(_COMPONENT)
        def _tag_verbs(doc: Any) -> Any:
            for token in doc:
                token.tag_ = "VB" if _is_verb(token.text) else "NN"
            return doc

    nlp = spacy.blank("xx")
    # Japanese has no spaces: make 。！？ tokens of their own so the sentencizer sees them.
    cjk_end = r"[。！？]"
    tokenizer: Any = nlp.tokenizer
    tokenizer.infix_finditer = compile_infix_regex(
        [*(nlp.Defaults.infixes or ()), cjk_end]
    ).finditer
    tokenizer.suffix_search = compile_suffix_regex([*(nlp.Defaults.suffixes or ()), cjk_end]).search
    nlp.add_pipe("sentencizer", config={"punct_chars": [".", "!", "?", "。", "！", "？"]})
    nlp.add_pipe(_COMPONENT)
    return nlp


def install() -> str:
    """Make unstructured's NLP offline-safe in this process; return which NLP is in use."""
    import unstructured.nlp.tokenize as tokenize

    if spacy_model_installed():
        return "spaCy en_core_web_sm"
    nlp = build_fallback()
    # _run_pipeline looks _get_nlp up in the module at call time, so this one assignment
    # reroutes word_tokenize, pos_tag and sent_tokenize, and nothing ever reaches the download.
    tokenize._get_nlp = lambda: nlp  # type: ignore[assignment]
    return FALLBACK
