"""Yardsticks for the performance benchmark.

Nothing is compiled at import; each piece builds itself into ``bench/peers/build/``
(git-ignored) on first use.

* ``handwritten``  hand-written Cython Hogwild kernels (SVM, MF) + rmse / accuracy helpers
* ``libmf``        LIBMF from the PyPI sdist, built with SSE + OpenMP, via ctypes
* ``pingpong``     cache-line hand-off probe to tag 2-thread timings "near" / "far"
* ``others``       scikit-learn SGDClassifier, scikit-surprise SVD, Vowpal Wabbit runners
"""

from . import handwritten, libmf, others, pingpong
from .handwritten import (mf_epoch, mf_epoch_chunks, rmse, svm_accuracy, svm_epoch,
                          svm_epoch_chunks)
from .libmf import libmf_rmse, libmf_time, libmf_train
from .others import sklearn_svm, surprise_svd, vw_svm
from .pingpong import pingpong_ns, placement

__all__ = [
    "handwritten", "libmf", "others", "pingpong",
    "svm_epoch", "svm_epoch_chunks", "mf_epoch", "mf_epoch_chunks", "rmse", "svm_accuracy",
    "libmf_train", "libmf_rmse", "libmf_time",
    "pingpong_ns", "placement",
    "sklearn_svm", "surprise_svd", "vw_svm",
]
