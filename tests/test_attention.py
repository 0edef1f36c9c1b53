import keras
import numpy as np
import pytest

import keras_transformer_layers as ktl
from tests import numpy_reference as ref
from tests.layer_contract import check_layer
from tests.layer_weights import attention_params
from tests.layer_weights import randomize

pytestmark = pytest.mark.backend_neutral


@pytest.mark.parametrize("return_scores", [False, True], ids=["output", "with_scores"])
def test_contract(tmp_path, return_scores):
    query = np.random.rand(2, 4, 8).astype("float32")
    value = np.random.rand(2, 6, 8).astype("float32")
    check_layer(
        tmp_path,
        ktl.MultiHeadAttention,
        {"num_heads": 2, "key_dim": 3, "dropout": 0.1},
        [query, value],
        expected_output_shape=[(2, 4, 8), (2, 2, 4, 6)] if return_scores else (2, 4, 8),
        expected_num_trainable_weights=8,
        expected_num_non_trainable_variables=1,  # the dropout seed
        call_kwargs={"return_attention_scores": return_scores},
    )


def test_matches_numpy_reference_with_mask():
    layer = ktl.MultiHeadAttention(num_heads=3, key_dim=4, value_dim=5)
    query = np.random.rand(2, 4, 6).astype("float32")
    value = np.random.rand(2, 5, 7).astype("float32")
    mask = np.random.rand(2, 4, 5) > 0.3
    mask[:, :, 0] = True
    output, scores = layer(query, value, attention_mask=mask, return_attention_scores=True)
    randomize(layer)
    output, scores = layer(query, value, attention_mask=mask, return_attention_scores=True)
    for example in range(2):
        expected, expected_weights = ref.multi_head_attention(
            query[example], value[example], attention_params(layer), mask[example]
        )
        np.testing.assert_allclose(keras.ops.convert_to_numpy(output)[example], expected, atol=1e-5)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(scores)[example], expected_weights, atol=1e-5
        )


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("masked", [False, True], ids=["no_mask", "mask"])
def test_one_query_position_matches_numpy_reference(policy, masked):
    # A decoding step's shape: one query per row (computed as elementwise
    # products and sums on TensorFlow). Row 1 of the mask allows no key at all.
    layer = ktl.MultiHeadAttention(num_heads=3, key_dim=4, value_dim=5, dtype=policy)
    query = np.random.rand(3, 1, 6).astype("float32")
    value = np.random.rand(3, 7, 6).astype("float32")
    mask = np.random.rand(3, 1, 7) > 0.4
    mask[:, :, 0] = True
    mask[1] = False
    layer(query, value)
    randomize(layer)
    kwargs = {"attention_mask": mask} if masked else {}
    output = keras.ops.convert_to_numpy(keras.ops.cast(layer(query, value, **kwargs), "float32"))
    tolerance = 1e-5 if policy == "float32" else 3e-2
    for example in range(3):
        expected, _ = ref.multi_head_attention(
            query[example],
            value[example],
            attention_params(layer),
            mask[example] if masked else None,
        )
        np.testing.assert_allclose(output[example], expected, atol=tolerance, rtol=tolerance)
    if masked:  # attends to nothing: the output bias alone
        np.testing.assert_allclose(
            output[1, 0], keras.ops.convert_to_numpy(layer.output_dense.bias), atol=tolerance
        )


def _copied_pair(num_heads, key_dim, query, value, key=None):
    theirs = keras.layers.MultiHeadAttention(num_heads=num_heads, key_dim=key_dim)
    ours = ktl.MultiHeadAttention(num_heads=num_heads, key_dim=key_dim)
    theirs(query, value, key)
    ours(query, value, key)
    randomize(theirs)
    ours.set_weights(theirs.get_weights())
    return ours, theirs


@pytest.mark.parametrize(
    "case", ["self", "cross", "causal", "padded_self", "padded_cross", "key_differs"]
)
def test_parity_with_keras_multi_head_attention(case):
    query = np.random.rand(3, 5, 8).astype("float32")
    value = (
        query
        if case in ("self", "causal", "padded_self")
        else np.random.rand(3, 7, 8).astype("float32")
    )
    key = np.random.rand(3, 7, 8).astype("float32") if case == "key_differs" else None
    ours, theirs = _copied_pair(4, 2, query, value, key)
    kwargs = {"use_causal_mask": case == "causal"}
    valid_rows = np.ones((3, 5), bool)
    if case.startswith("padded"):
        query_lengths, value_lengths = [5, 3, 1], [7, 4, 2] if case == "padded_cross" else [5, 3, 1]
        query_mask = np.arange(5)[None] < np.array(query_lengths)[:, None]
        value_mask = np.arange(value.shape[1])[None] < np.array(value_lengths)[:, None]
        # Keras MHA reads the masks Keras attaches to tensors; build them with Embedding.
        kwargs["attention_mask"] = query_mask[:, :, None] & value_mask[:, None, :]
        valid_rows = query_mask
    out_ours, scores_ours = ours(query, value, key, return_attention_scores=True, **kwargs)
    out_theirs, scores_theirs = theirs(query, value, key, return_attention_scores=True, **kwargs)
    # Rows with no key to attend to differ by design (Keras: mean of values); compare the rest.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out_ours)[valid_rows],
        keras.ops.convert_to_numpy(out_theirs)[valid_rows],
        atol=1e-5,
    )
    np.testing.assert_allclose(
        np.transpose(keras.ops.convert_to_numpy(scores_ours), (0, 2, 1, 3))[valid_rows],
        np.transpose(keras.ops.convert_to_numpy(scores_theirs), (0, 2, 1, 3))[valid_rows],
        atol=1e-5,
    )


def test_parity_with_keras_on_propagated_masks():
    # Keras MHA deletes the mask of the tensor it is given, so each layer gets
    # its own model over a shared embedding.
    embedding = keras.layers.Embedding(20, 8, mask_zero=True)
    ours_layer = ktl.MultiHeadAttention(2, 4)
    theirs_layer = keras.layers.MultiHeadAttention(2, 4)
    models = []
    for layer in (ours_layer, theirs_layer):
        ids = keras.Input((None,), dtype="int32")
        embedded = embedding(ids)
        models.append(keras.Model(ids, layer(embedded, embedded)))
    randomize(theirs_layer)
    ours_layer.set_weights(theirs_layer.get_weights())
    tokens = np.array([[5, 6, 7, 0, 0], [1, 2, 3, 4, 9]])
    ours, theirs = (keras.ops.convert_to_numpy(model(tokens)) for model in models)
    valid = tokens != 0
    np.testing.assert_allclose(ours[valid], theirs[valid], atol=1e-5)
    # The padding keys are ignored: a new embedding for id 0 changes no real output.
    embedding.embeddings.assign(
        np.concatenate(
            [np.full((1, 8), 50.0), keras.ops.convert_to_numpy(embedding.embeddings)[1:]]
        ).astype("float32")
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(models[0](tokens))[valid], ours[valid], atol=1e-5
    )


def test_padding_keys_do_not_change_real_outputs():
    layer = ktl.MultiHeadAttention(2, 4)
    query = np.random.rand(1, 3, 8).astype("float32")
    value = np.random.rand(1, 5, 8).astype("float32")
    key_mask = np.array([[True, True, True, False, False]])
    first = layer(query, value, value_mask=key_mask)
    changed = value.copy()
    changed[:, 3:] = 100.0
    second = layer(query, changed, value_mask=key_mask)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(first), keras.ops.convert_to_numpy(second), atol=1e-6
    )


def test_causal_mask_hides_the_future():
    layer = ktl.MultiHeadAttention(2, 4)
    x = np.random.rand(1, 6, 8).astype("float32")
    first, scores = layer(x, x, use_causal_mask=True, return_attention_scores=True)
    assert np.all(np.triu(keras.ops.convert_to_numpy(scores)[0, 0], k=1) == 0.0)
    changed = x.copy()
    changed[:, 4:] += 5.0
    second = layer(changed, changed, use_causal_mask=True)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(first)[:, :4],
        keras.ops.convert_to_numpy(second)[:, :4],
        atol=1e-6,
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scores).sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("dropout", [0.0, 0.5], ids=["no_dropout", "dropout"])
@pytest.mark.parametrize("return_scores", [False, True], ids=["output", "scores"])
def test_row_with_all_keys_masked_is_zero_not_nan(policy, dropout, return_scores):
    layer = ktl.MultiHeadAttention(2, 4, dropout=dropout, use_bias=False, dtype=policy)
    # Eight keys, so that dropout cannot plausibly drop every weight of row 0.
    x = np.random.rand(2, 8, 8).astype("float32") * 10
    mask = np.ones((2, 8, 8), bool)
    mask[0, 1, :] = False  # query 1 of example 0 may attend to nothing
    result = layer(x, x, attention_mask=mask, training=True, return_attention_scores=return_scores)
    output = result[0] if return_scores else result
    output = keras.ops.convert_to_numpy(keras.ops.cast(output, "float32"))
    assert np.all(np.isfinite(output))
    np.testing.assert_array_equal(output[0, 1], 0.0)
    assert np.abs(output[0, 0]).max() > 0
    if return_scores:
        scores = keras.ops.convert_to_numpy(keras.ops.cast(result[1], "float32"))
        np.testing.assert_array_equal(scores[0, :, 1], 0.0)


def test_fully_masked_row_with_bias_returns_the_output_bias():
    layer = ktl.MultiHeadAttention(1, 4)
    x = np.random.rand(1, 2, 4).astype("float32")
    layer(x, x)
    randomize(layer)
    output = layer(x, x, attention_mask=np.array([[[True, False], [False, False]]]))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(output)[0, 1],
        keras.ops.convert_to_numpy(layer.output_dense.bias),
        atol=1e-6,
    )


def test_scores_structure_is_the_same_in_functional_calls():
    query = keras.Input((None, 8))
    output, scores = ktl.MultiHeadAttention(4, 2)(query, query, return_attention_scores=True)
    assert tuple(scores.shape) == (None, 4, None, None)
    model = keras.Model(query, [output, scores])
    eager_output, eager_scores = model(np.random.rand(2, 3, 8).astype("float32"))
    assert eager_scores.shape == (2, 4, 3, 3)


def test_query_mask_propagates_to_output():
    ids = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(10, 8, mask_zero=True)(ids)
    attended = ktl.MultiHeadAttention(2, 4)(embedded, embedded)
    model = keras.Model(ids, keras.ops.cast(attended._keras_mask, "int32"))
    np.testing.assert_array_equal(model(np.array([[4, 2, 0]])), [[1, 1, 0]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_heads": 0, "key_dim": 4}, "`num_heads`.*Received: num_heads=0"),
        ({"num_heads": 2, "key_dim": 4.0}, r"`key_dim`.*Received: key_dim=4\.0"),
        (
            {"num_heads": 2, "key_dim": 4, "dropout": 1.0},
            r"`dropout`.*\[0, 1\).*Received: dropout=1\.0",
        ),
        ({"num_heads": 2, "key_dim": 4, "dropout": -0.1}, r"Received: dropout=-0\.1"),
        ({"num_heads": True, "key_dim": 4}, "Received: num_heads=True"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ktl.MultiHeadAttention(**kwargs)


def test_rejects_rank_two_input():
    with pytest.raises(
        ValueError, match=r"`query` must be a rank-3.*Received: query.shape=\(2, 8\)"
    ):
        ktl.MultiHeadAttention(2, 4)(np.zeros((2, 8), "float32"), np.zeros((2, 3, 8), "float32"))


def test_rejects_attention_mask_of_wrong_shape():
    x = np.zeros((2, 3, 8), "float32")
    with pytest.raises(
        ValueError,
        match=r"`attention_mask` must have shape .*\(2, 2, 3, 3\).*Received: attention_mask.shape=\(2, 3, 4\)",
    ):
        ktl.MultiHeadAttention(2, 4)(x, x, attention_mask=np.ones((2, 3, 4), bool))
    with pytest.raises(ValueError, match=r"Received: attention_mask.shape=\(2, 3\)"):
        ktl.MultiHeadAttention(2, 4)(x, x, attention_mask=np.ones((2, 3), bool))
