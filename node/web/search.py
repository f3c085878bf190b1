"""Search over titles, descriptions and tags: Arabic normalisation, English case-folding.

Index and query are normalised alike (the raw text is kept elsewhere, untouched):

1. NFC first: under NFD an alef with hamza is two code points and the alef rules below miss it;
2. strip the harakat (U+064B-U+0652) and tatweel (U+0640) before splitting into words, since
   combining marks are not word characters and would cut a word in two;
3. أ إ آ -> ا and ى -> ي; ة -> ه only if asked (disputed: it merges distinct words);
4. case-fold (English and every other cased script).

A query matches an item when every query word is a prefix of some word of the item (so "wit"
finds "witness"); a word of one letter must match exactly, or a single letter would expand to
half the vocabulary. Arabic words are also indexed without their definite article (ال), so
"شاهد" finds "الشاهد".
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterable

HARAKAT_AND_TATWEEL = re.compile("[\u064b-\u0652\u0640]")
ALEF_FORMS = str.maketrans({"\u0623": "\u0627", "\u0625": "\u0627", "\u0622": "\u0627"})
ALEF_MAKSURA = str.maketrans({"\u0649": "\u064a"})
TEH_MARBUTA = str.maketrans({"\u0629": "\u0647"})
WORD = re.compile(r"\w+")
ARTICLE = "\u0627\u0644"  # ال
MAX_QUERY = 256  # characters
MAX_QUERY_WORDS = 12
MAX_EXPANSION = 2_000  # index words one query prefix may stand for


def normalise(text: str, fold_teh_marbuta: bool = False) -> str:
    """The searchable form of `text` (see the module docstring for the order of the steps)."""
    text = unicodedata.normalize("NFC", text)
    text = HARAKAT_AND_TATWEEL.sub("", text)
    text = text.translate(ALEF_FORMS).translate(ALEF_MAKSURA)
    if fold_teh_marbuta:
        text = text.translate(TEH_MARBUTA)
    return text.casefold()


def words(text: str, fold_teh_marbuta: bool = False) -> list[str]:
    """The normalised words of `text`, in order (duplicates kept)."""
    return WORD.findall(normalise(text, fold_teh_marbuta))


def index_terms(texts: Iterable[str], fold_teh_marbuta: bool = False) -> frozenset[str]:
    """Every term an item is found under: its words, and Arabic words without the article."""
    terms: set[str] = set()
    for text in texts:
        for w in words(text, fold_teh_marbuta):
            terms.add(w)
            if w.startswith(ARTICLE) and len(w) > len(ARTICLE) + 1:
                terms.add(w[len(ARTICLE) :])
    return frozenset(terms)


class SearchIndex:
    """An in-memory inverted index: term -> ids of the items that contain it.

    Mutated only from the event loop thread (the catalog applies changes there), so queries
    never see a half-applied change.
    """

    def __init__(self, fold_teh_marbuta: bool = False) -> None:
        self.fold_teh_marbuta = fold_teh_marbuta
        self._postings: dict[str, set[str]] = {}
        self._terms_of: dict[str, frozenset[str]] = {}
        self._vocabulary: list[str] = []  # sorted, for prefix lookups; may hold dead terms
        self._new_terms: list[str] = []

    def __len__(self) -> int:
        return len(self._terms_of)

    def add(self, item_id: str, texts: Iterable[str]) -> None:
        if item_id in self._terms_of:
            self.remove(item_id)
        terms = index_terms(texts, self.fold_teh_marbuta)
        self._terms_of[item_id] = terms
        for term in terms:
            ids = self._postings.get(term)
            if ids is None:
                self._postings[term] = {item_id}
                self._new_terms.append(term)
            else:
                ids.add(item_id)

    def remove(self, item_id: str) -> None:
        for term in self._terms_of.pop(item_id, ()):
            ids = self._postings.get(term)
            if ids is not None:
                ids.discard(item_id)
                if not ids:
                    del self._postings[term]  # its vocabulary entry is skipped from now on

    def _sorted_vocabulary(self) -> list[str]:
        if self._new_terms:
            # Two sorted runs: timsort merges them in linear time.
            merged = self._vocabulary + sorted(set(self._new_terms))
            merged.sort()
            self._vocabulary = [t for i, t in enumerate(merged) if i == 0 or merged[i - 1] != t]
            self._new_terms = []
        return self._vocabulary

    def _matching(self, word: str) -> set[str]:
        if len(word) < 2:
            return set(self._postings.get(word, ()))
        vocabulary = self._sorted_vocabulary()
        out: set[str] = set()
        start = bisect.bisect_left(vocabulary, word)
        for term in vocabulary[start : start + MAX_EXPANSION]:
            if not term.startswith(word):
                break
            out.update(self._postings.get(term, ()))
        return out

    def query(self, text: str) -> set[str]:
        """Ids of the items matching every word of `text` (empty for an empty query)."""
        wanted = list(dict.fromkeys(words(text[:MAX_QUERY], self.fold_teh_marbuta)))
        wanted = wanted[:MAX_QUERY_WORDS]
        if not wanted:
            return set()
        result: set[str] | None = None
        # Longest words first: usually the rarest, so the intersection shrinks fastest.
        for word in sorted(wanted, key=len, reverse=True):
            found = self._matching(word)
            result = found if result is None else result & found
            if not result:
                return set()
        return result or set()
