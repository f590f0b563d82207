"""Intent classification: word and character n-gram TF-IDF into a linear SVM.

Why this model: a linear SVM (scikit-learn's LinearSVC) trains in well under a second
on our data and was as accurate as logistic regression in 5-fold cross-validation at a
tenth of the training time. Its scores are turned into calibrated confidences by
temperature scaling: a softmax whose temperature is fitted on out-of-fold scores to
minimise the log-loss, so "0.3" means roughly what Rasa's fallback threshold expects.
The parameters are a few plain arrays, so a model is stored without pickle (see
:mod:`nlu.model_store`); parsing one message uses the same analyzers and the arrays
directly, which keeps a parse well under a millisecond.
"""

from __future__ import annotations

import gc
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from nlu.tokenise import tokenise

#: SVM regularisation, chosen by 5-fold cross-validation on the training data. With the
#: residents' register added (issue 11, 7,089 examples) C = 0.25 / 0.5 / 1.0 / 2.0 gave
#: macro-F1 0.889 / 0.895 / 0.899 / 0.899 (argmax plus the fallback rule): a little less
#: regularisation pays now that the data is more varied, and 2.0 gains nothing more.
DEFAULT_C = 1.0
#: Character n-gram range: 1-3 did as well as Rasa's 1-4 in cross-validation, smaller
#: (re-checked on the issue-11 data at C = 1.0: 0.899 either way).
CHAR_NGRAMS = (1, 3)
#: A character n-gram seen in one training message only is dropped. In 5-fold
#: cross-validation this kept accuracy (macro-F1 0.773 → 0.776) while cutting the character
#: vocabulary by about two thirds, and with it the coefficient matrices that dominate
#: training memory, the model file and the parse process's footprint. Word features keep
#: every term: pruning them cost accuracy.
CHAR_MIN_DF = 2


@dataclass(frozen=True, slots=True)
class Analyzers:
    """Turn one normalised text into word and character features."""

    dictionary_dir: str | None
    char_min: int
    char_max: int

    def words(self, text: str) -> list[str]:
        tokens = tokenise(text, self.dictionary_dir)
        bigrams = [f"{a} {b}" for a, b in pairwise(tokens)]
        return tokens + bigrams

    def chars(self, text: str) -> list[str]:
        """Character n-grams inside padded words, like scikit-learn's ``char_wb``."""
        grams: list[str] = []
        for word in text.split():
            padded = f" {word} "
            for n in range(self.char_min, self.char_max + 1):
                if len(padded) < n:
                    break
                grams.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
        return grams


@dataclass(slots=True)
class IntentModel:
    """Fitted parameters: vocabularies, IDF weights, coefficients, labels."""

    labels: list[str]
    word_vocab: dict[str, int]
    char_vocab: dict[str, int]
    word_idf: np.ndarray
    char_idf: np.ndarray
    coef: np.ndarray  # (n_labels, n_word + n_char), float32, already divided by temperature
    intercept: np.ndarray  # (n_labels,), divided by temperature
    analyzers: Analyzers
    metrics: dict[str, float] = field(default_factory=dict)
    _idf_lists: tuple[list[float], list[float]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._idf_lists = (self.word_idf.tolist(), self.char_idf.tolist())

    def _block(
        self, grams: list[str], vocab: dict[str, int], idf: Sequence[float], offset: int
    ) -> tuple[list[int], list[float]]:
        """Sublinear TF-IDF, L2-normalised, of the known grams: the same numbers as
        scikit-learn's ``TfidfVectorizer(sublinear_tf=True)``. Counting first (in C) and
        looking up each distinct gram once, with the IDF as a Python list rather than
        NumPy scalars, halves this step (issue 11's 0.5 ms parse)."""
        index: list[int] = []
        values: list[float] = []
        get = vocab.get
        for gram, count in Counter(grams).items():
            column = get(gram)
            if column is None or gram.isspace():
                continue
            index.append(offset + column)
            values.append((1.0 + math.log(count)) * idf[column])
        if not index:
            return [], []
        norm = math.sqrt(sum(v * v for v in values)) or 1.0
        return index, [v / norm for v in values]

    def probabilities(self, text: str) -> np.ndarray | None:
        """Softmax over labels for one normalised text (the fast path); ``None`` when
        not one word or character n-gram of the text was seen in training (junk)."""
        w_index, w_values = self._block(
            self.analyzers.words(text), self.word_vocab, self._idf_lists[0], 0
        )
        c_index, c_values = self._block(
            self.analyzers.chars(text), self.char_vocab, self._idf_lists[1], len(self.word_vocab)
        )
        index = w_index + c_index
        if not index:
            return None
        scores = self.intercept + self.coef[:, index] @ np.asarray(w_values + c_values)
        scores -= scores.max()
        exp = np.exp(scores)
        return exp / exp.sum()


# scikit-learn and SciPy are imported inside the training functions: a bot process that
# only parses never loads them (about 90 MB of resident memory saved).


def _vectorizer(analyzer: Callable[[str], list[str]], min_df: int = 1) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        analyzer=analyzer, sublinear_tf=True, lowercase=False, dtype=np.float64, min_df=min_df
    )


def _svm(c: float) -> Any:
    from sklearn.svm import LinearSVC

    return LinearSVC(C=c, class_weight="balanced")


def fit_temperature(scores: np.ndarray, gold: np.ndarray) -> float:
    """The softmax temperature that minimises log-loss of out-of-fold ``scores``."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def loss(log_t: float) -> float:
        logp = log_softmax(scores / math.exp(log_t), axis=1)
        return float(-logp[np.arange(len(gold)), gold].mean())

    result = minimize_scalar(loss, bounds=(-6.0, 3.0), method="bounded")
    return math.exp(float(result.x))


def fit_intent_model(
    texts: Sequence[str],
    intents: Sequence[str],
    analyzers: Analyzers,
    c: float = DEFAULT_C,
    progress: Callable[[str], None] | None = None,
) -> IntentModel:
    """Fit on normalised ``texts``; ``progress`` is told the stage names as they pass."""
    from scipy import sparse
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    step = progress or (lambda _stage: None)
    # Training memory is bounded by keeping one copy of everything at a time: the two
    # blocks are freed once stacked, the vectorizers once their vocabularies are copied
    # out, and the coefficients are scaled in place (see benchmarks/nlu_bench.py).
    word_vec = _vectorizer(analyzers.words)
    words = word_vec.fit_transform(texts)
    step("words")
    char_vec = _vectorizer(analyzers.chars, CHAR_MIN_DF)
    chars = char_vec.fit_transform(texts)
    char_vec.stop_words_ = None  # the pruned n-grams: large, and never needed again
    step("chars")
    features = sparse.hstack([words, chars], format="csr")
    del words, chars
    word_vocab = {str(k): int(v) for k, v in word_vec.vocabulary_.items()}
    char_vocab = {str(k): int(v) for k, v in char_vec.vocabulary_.items()}
    word_idf = word_vec.idf_.astype(np.float64)
    char_idf = char_vec.idf_.astype(np.float64)
    del word_vec, char_vec
    labels = np.asarray(intents)
    smallest = min(np.unique(labels, return_counts=True)[1])
    classes = np.unique(labels)
    if len(classes) < 3:
        raise ValueError("training data needs at least three intents")
    temperature = 1.0
    metrics: dict[str, float] = {}
    if smallest >= 3:
        folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
        scores = cross_val_predict(_svm(c), features, labels, cv=folds, method="decision_function")
        temperature = fit_temperature(scores, np.searchsorted(classes, labels))
        predicted = classes[scores.argmax(axis=1)]
        del scores
        metrics = {
            "oof_3fold_accuracy": round(float(accuracy_score(labels, predicted)), 4),
            "oof_3fold_macro_f1": round(float(f1_score(labels, predicted, average="macro")), 4),
            "temperature": round(temperature, 4),
        }
    gc.collect()
    step("calibration")
    classifier = _svm(c).fit(features, labels)
    del features
    step("classifier")
    coef = classifier.coef_
    coef /= temperature
    intercept = classifier.intercept_ / temperature
    label_names = [str(x) for x in classifier.classes_]
    del classifier
    return IntentModel(
        labels=label_names,
        word_vocab=word_vocab,
        char_vocab=char_vocab,
        word_idf=word_idf,
        char_idf=char_idf,
        coef=coef.astype(np.float32),
        intercept=intercept.astype(np.float64),
        analyzers=analyzers,
        metrics=metrics,
    )


def analyzers_for(dictionary_dir: Path | None) -> Analyzers:
    return Analyzers(str(dictionary_dir) if dictionary_dir else None, *CHAR_NGRAMS)
