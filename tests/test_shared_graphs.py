"""Graphs traced once per model structure (predict.shared): every model of a structure runs them
with its own weights, weights assigned later are seen, other structures get their own graphs,
and the graph keeps no model alive."""

from __future__ import annotations

import gc
import weakref

import keras
import numpy as np
import tensorflow as tf

from napari_sam import SAMPredictor
from napari_sam.predict.candidates import decode_points, trace_counts
from napari_sam.predict.predictor import model_graphs
from napari_sam.predict.prompts import batch_prompts
from napari_sam.predict.shared import clear_shared_graphs, shared_graph
from napari_sam.weights import create_model

from small_configs import TINY

IMAGE = (np.random.default_rng(0).random((48, 56, 3)) * 255).astype(np.uint8)
CLICK = dict(points=np.array([[20.0, 15.0], [30.0, 25.0]]), labels=np.array([1, 0]))


def model(seed, **overrides):
    keras.utils.set_random_seed(seed)
    return create_model("sam_vit_b", **{**TINY, **overrides})


def predict(m, **kwargs):
    p = SAMPredictor(m)
    p.set_image(IMAGE)
    return p(**CLICK, **kwargs), p


def eager_logits(m):
    """The prompt path of ``m`` run eagerly (no graph), from the predictor's own inputs."""
    p = SAMPredictor(m)
    p.set_image(IMAGE)
    (pts, lbl, bxs, msk), _ = batch_prompts(CLICK["points"], CLICK["labels"], None, None,
                                            p.original_size, m.mask_size())  # fmt: skip
    pts = p.resizer.scale_points(pts).astype(np.float32)
    logits, _ = m.decode(p.embedding, pts, lbl, bxs.astype(np.float32), msk,
                         tuple(m.cfg.input_size), True)  # fmt: skip
    return logits.numpy()[0]


def test_models_of_one_structure_share_graphs_and_keep_their_own_weights():
    a, b = model(0), model(1)
    (_, sa, la), pa = predict(a, return_logits=True)
    traces = (pa.trace_count(), model_graphs(a).embed.experimental_get_tracing_count())
    (_, sb, lb), pb = predict(b, return_logits=True)
    assert (pb.trace_count(), model_graphs(b).embed.experimental_get_tracing_count()) == traces
    graphs_a, graphs_b = model_graphs(a), model_graphs(b)
    assert graphs_a.decode[True, True].function is graphs_b.decode[True, True].function
    assert np.abs(la - lb).max() > 1e-3  # other weights, other logits
    # each model's logits are those of its own weights, run eagerly
    np.testing.assert_allclose(la, eager_logits(a), atol=1e-5)
    np.testing.assert_allclose(lb, eager_logits(b), atol=1e-5)
    # weights assigned after the predictor was made are read by the graph
    b.set_weights(a.get_weights())
    pb.set_image(IMAGE)
    _, sb2, lb2 = pb(**CLICK, return_logits=True)
    np.testing.assert_array_equal(lb2, la)
    np.testing.assert_array_equal(sb2, sa)
    assert pb.trace_count() == traces[0]


def test_another_structure_gets_its_own_graph_and_no_model_is_kept():
    a = model(0)
    c = model(0, decoder_iou_hidden_dim=16)  # one layer narrower: another structure
    assert model_graphs(a).decode[True, False].function is not \
        model_graphs(c).decode[True, False].function  # fmt: skip
    predict(c)
    ref = weakref.ref(c)
    del c
    gc.collect()
    assert ref() is None, "a shared graph kept the model it was traced with"
    d = model(2, decoder_iou_hidden_dim=16)
    predict(d)  # traced with c, run with d's weights after c is gone


def test_xla_grid_decoding_is_shared_too():
    a, b = model(0), model(1)
    pts = np.array([[10.0, 12.0], [30.0, 20.0]])
    _, pa = predict(a)
    la, ia = decode_points(pa, pts, batch=4)
    _, pb = predict(b)
    counts = trace_counts(a)
    lb, ib = decode_points(pb, pts, batch=4)
    assert trace_counts(b) == counts and counts[0] == 1
    assert not np.allclose(la, lb)
    b.set_weights(a.get_weights())
    pb.set_image(IMAGE)
    lb, ib = decode_points(pb, pts, batch=4)
    np.testing.assert_array_equal(lb, la)
    np.testing.assert_array_equal(ib, ia)


def test_a_function_of_nothing_but_the_weights():
    a, b = model(0), model(1)
    spec = [tf.TensorSpec((None,), tf.float32)]

    def fn(m, x):
        return tf.reduce_sum(m.prompt_encoder.no_mask_embed) + x

    ga, gb = shared_graph(a, "sum", fn, spec), shared_graph(b, "sum", fn, spec)
    x = np.zeros(2, np.float32)
    want = [float(np.sum(keras.ops.convert_to_numpy(m.prompt_encoder.no_mask_embed)))
            for m in (a, b)]  # fmt: skip
    np.testing.assert_allclose([ga(x).numpy()[0], gb(x).numpy()[0]], want, rtol=1e-5)
    assert ga.experimental_get_tracing_count() == gb.experimental_get_tracing_count() == 1


def test_cleared_graphs_are_traced_again_and_old_ones_keep_working():
    a = model(0)
    (_, _, la), pa = predict(a, return_logits=True)
    assert clear_shared_graphs() >= 1
    b = model(0)
    graphs = model_graphs(b)
    assert graphs.decode[True, True].function is not model_graphs(a).decode[True, True].function
    assert graphs.embed.experimental_get_tracing_count() == 0
    (_, _, lb), _ = predict(b, return_logits=True)
    np.testing.assert_array_equal(lb, la)  # the same weights (seed 0), traced again
    np.testing.assert_array_equal(pa(**CLICK, return_logits=True)[2], la)


def test_the_instance_decoder_runs_as_one_graph_with_its_eager_maps():
    from napari_sam.segment.ais import decoder_graph

    model = create_model("sam_tiny_nuclei", pretrained=True)
    decoder = model.instance_decoder
    x = tf.random.stateless_normal((1, *model.grid_size(), model.cfg.embed_dim), (1, 2))
    graph = decoder_graph(decoder)
    assert decoder_graph(decoder) is graph
    np.testing.assert_allclose(graph(x).numpy(), decoder(x).numpy(), atol=1e-5)
    graph(x + 1.0)
    assert graph.experimental_get_tracing_count() == 1
