"""Graphs traced once per model structure and process, run with the weights of any model of it.

Tracing SAM's prompt path costs seconds (Keras layers called in graph mode, both branches of
the mask-prompt condition), XLA compiling it more; for a fresh model of a known structure
(the widget switching models, one model per file in a batch, the tests) that work was done
again. Here a graph is traced once, with the variables of the first model of its structure
replaced by values read inside the graph from resource handles given as one argument
(Keras' ``StatelessScope``); every later model of the same structure (the same class,
configuration, encoder dtype and variables) runs the same graph with its own handles. The
reads happen in the graph, so weights assigned later are seen, as with captured variables.

Only models whose variables are all on the CPU share graphs: elsewhere (a GPU) each model gets
its own graph as before, since the handles' devices would be lost in the packed argument.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

__all__ = ["SharedGraph", "clear_shared_graphs", "shared_graph"]

# (name, structure) -> tf.function of (handles, *args); the graph, never a model
_FUNCTIONS: dict = {}
# the model being called, whose variables a (first) trace maps to the values read
_CALLER = threading.local()


class SharedGraph:
    """One model's view of a graph traced once per model structure.

    Calling it runs the graph on the model's weights. ``experimental_get_tracing_count``
    and ``get_concrete_function`` are the underlying ``tf.function``'s.
    """

    def __init__(self, function, model, handles: tf.Tensor | None):
        self.function = function
        self._model = weakref.ref(model)
        self._handles = handles

    def __call__(self, *args):
        if self._handles is None:
            return self.function(*args)
        _CALLER.model = self._model
        return self.function(self._handles, *args)

    def experimental_get_tracing_count(self) -> int:
        """How often the graph was traced (shared by every model of the structure)."""
        return self.function.experimental_get_tracing_count()

    def get_concrete_function(self):
        """The traced graph (``structured_outputs`` gives its outputs' specs)."""
        _CALLER.model = self._model
        return self.function.get_concrete_function()


def clear_shared_graphs() -> int:
    """Forget the traced graphs: the next model of each structure traces them again.

    Graphs already handed out keep working. Returns how many were forgotten.
    """
    n = len(_FUNCTIONS)
    _FUNCTIONS.clear()
    return n


# model -> (its structure, its packed variable handles), or None off the CPU: made once per
# model, though each of its graphs (embed, prepare, four decodes, ...) asks for it
_BINDINGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _binding(model) -> tuple[str, tf.Tensor] | None:
    if model not in _BINDINGS:
        variables = list(model.weights)
        if not all("CPU" in (v.value.device or "CPU").upper() for v in variables):
            _BINDINGS[model] = None
        else:
            structure = json.dumps(
                [type(model).__qualname__, model.cfg.to_dict(), model.encoder_dtype,
                 [(v.path, tuple(v.shape), str(v.dtype)) for v in variables]],
                sort_keys=True, default=str,
            )  # fmt: skip
            _BINDINGS[model] = structure, tf.stack([v.value.handle for v in variables])
    return _BINDINGS[model]


def shared_graph(
    model,
    name: str,
    fn: Callable,
    input_signature: Sequence,
    jit_compile: bool = False,
) -> SharedGraph:
    """``fn(model, *args)`` as a graph traced once for every model of ``model``'s structure.

    Parameters
    ----------
    model : SegmentAnythingModel
        The model whose weights the returned graph runs with.
    name : str
        Names the function: the same name and structure give the same graph, so ``fn`` must
        depend on nothing but the model's structure, its weights and the arguments.
    fn : callable
        ``fn(model, *args)``, traceable by TensorFlow.
    input_signature : sequence of tf.TensorSpec
        The arguments' specs (dynamic sizes as None: one trace for all of them).
    jit_compile : bool
        Compile the graph with XLA.

    Returns
    -------
    SharedGraph
        Callable with ``*args``.
    """
    binding = _binding(model)
    if binding is None:
        own = tf.function(lambda *args: fn(model, *args), input_signature=input_signature,
                          jit_compile=jit_compile)  # fmt: skip
        return SharedGraph(own, model, None)
    structure, handles = binding
    key = (name, structure)
    if key not in _FUNCTIONS:
        specs = [(v.shape, v.dtype) for v in model.weights]

        def with_values(values, *args):
            caller = _CALLER.model()  # traced with the calling model, never kept
            with keras.StatelessScope(state_mapping=list(zip(caller.weights, values, strict=True))):
                return fn(caller, *args)

        value_specs = [tf.TensorSpec(shape, dtype) for shape, dtype in specs]
        inner = (tf.function(with_values, input_signature=[value_specs, *input_signature],
                             jit_compile=True) if jit_compile else with_values)  # fmt: skip

        def with_handles(handles, *args):
            values = []
            for handle, (shape, dtype) in zip(tf.unstack(handles, len(specs)), specs, strict=True):
                value = tf.raw_ops.ReadVariableOp(resource=handle, dtype=dtype)
                value.set_shape(shape)
                values.append(value)
            return inner(values, *args)

        signature = [tf.TensorSpec((len(specs),), tf.resource), *input_signature]
        _FUNCTIONS[key] = tf.function(with_handles, input_signature=signature)
    return SharedGraph(_FUNCTIONS[key], model, handles)
