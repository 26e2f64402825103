"""A spec with several blocks: predict reads only the predicting block's data (API.md:
"one value per term of the block with `predict`; label data not needed"): a multi-task user
predicting one task has no rows of the other at hand (audit F4). Data that give no terms at
all is a DataError."""
import numpy as np
import pytest

from hogwild_dsl import DataError

MULTITASK = """
model two_task
dim reg_ex, cls_ex, feature
data Xr[reg_ex, feature] : dense
data yr[reg_ex] : real
data Xc[cls_ex, feature] : dense
data yc[cls_ex] : sign
param w[feature] = 0
for i in reg_ex:
    loss (dot(Xr[i], w) - yr[i])^2
    predict dot(Xr[i], w)
for j in cls_ex:
    loss logistic(yc[j] * dot(Xc[j], w))
train step 0.05, epochs 3
"""


def test_predict_needs_only_the_predicting_blocks_data(load_spec):
    mod = load_spec(text=MULTITASK)
    rng = np.random.default_rng(0)
    Xr, Xc = rng.normal(size=(30, 4)), rng.normal(size=(20, 4))
    yr, yc = Xr @ np.arange(4.0), np.sign(Xc[:, 0] + 0.1)
    t = mod.Trainer(threads=1).fit(Xr=Xr, yr=yr, Xc=Xc, yc=yc)
    want = Xr @ t.params["w"]
    np.testing.assert_allclose(t.predict(Xr=Xr), want, rtol=1e-12)
    np.testing.assert_allclose(t.predict(Xr=Xr, Xc=Xc), want, rtol=1e-12)
    with pytest.raises(DataError, match="missing data 'Xr'"):
        t.predict(Xc=Xc)


def test_a_fit_on_no_terms_is_a_data_error(load_spec):
    """Empty data (a filter that removed every row) is said, not trained on silently with an
    objective of 0 (audit M1); epochs=0 still initialises the params."""
    mod = load_spec(text=MULTITASK)
    empty = dict(Xr=np.zeros((0, 4)), yr=np.zeros(0), Xc=np.zeros((0, 4)), yc=np.zeros(0))
    with pytest.raises(DataError, match="no terms to train on: 'for i in reg_ex' and "
                                        "'for j in cls_ex' have 0 terms"):
        mod.Trainer(threads=1).fit(**empty)
    assert mod.Trainer(epochs=0).fit(**empty).params["w"].shape == (4,)
