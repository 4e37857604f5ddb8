"""Running and inspecting a LiteRT flatbuffer with `ai_edge_litert`.

What `export_litert` does with a converted file: load it with LiteRT's
default delegates (XNNPACK on CPU), feed it through its signature, time
`invoke`, and read from the loaded interpreter which weight tensors are
stored sparse and which ops run where. `ai_edge_litert` is imported only when
a function here is called.
"""

import re
import statistics
import time

import numpy as np

__all__ = [
    "LITERT_PACKAGE",
    "Runner",
    "import_interpreter",
    "inspect_interpreter",
    "median_invoke_seconds",
]

#: The package that provides LiteRT's interpreter.
LITERT_PACKAGE = "ai-edge-litert"

# LiteRT's dimension formats in `sparsity_parameters["dim_metadata"]`.
_DENSE, _SPARSE_CSR = 0, 1


def import_interpreter():
    """Returns `ai_edge_litert.interpreter.Interpreter`, or a clear ImportError."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise ImportError(
            "`keras_lth.export_litert` runs the exported file with LiteRT, "
            f"which needs the `{LITERT_PACKAGE}` package. Install it with "
            "`pip install 'keras-lth[litert]'` (or `pip install "
            f"{LITERT_PACKAGE}`). Import failed with: {error}"
        ) from error
    return Interpreter


class Runner:
    """One LiteRT interpreter on one file, fed through its first signature.

    Inputs are given in the Keras model's input order and matched to the
    signature by name; outputs come back in the Keras model's (flattened)
    output order, which the converter numbers `output_0`, `output_1`, ...

    Args:
        content: The flatbuffer, as bytes.
        input_names: The Keras model's input names, in order.
        sample: One sample (a list of arrays, batch 1) used to size the
            input tensors before `allocate_tensors`.

    Raises whatever LiteRT raises when the file cannot be loaded or
    prepared (for example a delegate that fails to prepare a node).
    """

    def __init__(self, content, input_names, sample):
        interpreter_class = import_interpreter()
        # Default op resolver, so LiteRT applies its default delegates
        # (XNNPACK) exactly as an app loading the file would; one thread.
        self.interpreter = interpreter_class(model_content=content, num_threads=1)
        signatures = self.interpreter.get_signature_list()
        if not signatures:
            raise ValueError("The LiteRT file has no signature to feed.")
        runner = self.interpreter.get_signature_runner(next(iter(signatures)))
        by_name = runner.get_input_details()
        missing = [name for name in input_names if name not in by_name]
        if missing:
            raise ValueError(
                f"The LiteRT signature has inputs {sorted(by_name)}; expected "
                f"the Keras model's inputs {list(input_names)}."
            )
        self.inputs = [by_name[name] for name in input_names]
        outputs = runner.get_output_details()
        # A signature runner holds the interpreter's wrapper, and LiteRT
        # refuses to invoke while anything else does.
        del runner
        self.outputs = [outputs[name] for name in sorted(outputs, key=_natural_key)]
        for detail, array in zip(self.inputs, sample, strict=True):
            if tuple(detail["shape"]) != array.shape:
                self.interpreter.resize_tensor_input(detail["index"], array.shape)
        self.interpreter.allocate_tensors()

    def set_inputs(self, sample):
        """Sets the interpreter's inputs to `sample`, one array per input."""
        for detail, array in zip(self.inputs, sample, strict=True):
            self.interpreter.set_tensor(
                detail["index"], np.asarray(array, dtype=detail["dtype"])
            )

    def __call__(self, sample):
        """Runs one sample; returns the outputs as a list of arrays."""
        self.set_inputs(sample)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(d["index"]).copy() for d in self.outputs]


def _natural_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def median_invoke_seconds(runners, sample, runs):
    """Times `invoke` on each runner, interleaved; returns medians in seconds.

    Every runner gets the same input, then a warm-up, then `runs` timed
    invokes of batch 1, taken in rounds of 10 per runner, the order of the
    runners reversed every other round, so that the machine's noise falls on
    all of them alike. Each invoke is timed on its own with
    `time.perf_counter`; the figure includes the Python call into LiteRT,
    the same for every runner.
    """
    for runner in runners:
        runner.set_inputs(sample)
        for _ in range(10):
            runner.interpreter.invoke()
    times = [[] for _ in runners]
    order = list(range(len(runners)))
    rounds = max(1, -(-runs // 10))
    for index in range(rounds):
        for position in order if index % 2 == 0 else reversed(order):
            invoke = runners[position].interpreter.invoke
            bucket = times[position]
            for _ in range(min(10, runs - 10 * index)):
                start = time.perf_counter()
                invoke()
                bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]


def inspect_interpreter(interpreter):
    """Reads the stored sparsity and the ops of a loaded interpreter.

    Returns:
        A dict with `tensors` (one dict per weight tensor that carries
        sparsity parameters), `ops` (op name -> count, delegate nodes left
        out), `sparse_kernel_ops` (ops that read a sparse tensor directly,
        so run a sparse kernel), `densify_ops` and `delegated_ops` (ops that
        a delegate such as XNNPACK took over).
    """
    details = interpreter.get_tensor_details()
    nodes = interpreter._get_ops_details()  # The only per-node view LiteRT offers.
    graph = [node for node in nodes if node["op_name"] != "DELEGATE"]
    delegates = [node for node in nodes if node["op_name"] == "DELEGATE"]
    consumers = {}
    for node in graph:
        for tensor in node["inputs"]:
            consumers.setdefault(int(tensor), []).append(node)

    tensors = []
    sparse_readers = set()
    for detail in details:
        params = detail.get("sparsity_parameters")
        if not params:
            continue
        readers = consumers.get(detail["index"], [])
        sparse_readers.update(node["index"] for node in readers)
        shape = tuple(int(dim) for dim in detail["shape"])
        stored = _stored_values(params)
        tensors.append(
            {
                "name": detail["name"],
                "shape": shape,
                "dtype": np.dtype(detail["dtype"]).name,
                "block": _block(params, len(shape)),
                "stored_fraction": stored / max(1, int(np.prod(shape))),
                "read_by": tuple(sorted({node["op_name"] for node in readers})),
            }
        )

    ops = {}
    for node in graph:
        ops[node["op_name"]] = ops.get(node["op_name"], 0) + 1
    sparse_kernel_ops = sum(
        1
        for node in graph
        if node["index"] in sparse_readers and node["op_name"] != "DENSIFY"
    )
    return {
        "tensors": tensors,
        "ops": ops,
        "sparse_kernel_ops": sparse_kernel_ops,
        "densify_ops": ops.get("DENSIFY", 0),
        "delegated_ops": len(_delegated(graph, delegates)),
    }


def _stored_values(params):
    """How many values a sparse tensor stores, from its dimension metadata.

    The dimensions are listed in traversal order (the tensor's own, then its
    block dimensions). A dense dimension multiplies the count by its size;
    a CSR dimension lists every stored index, which already counts all the
    combinations of the dimensions before it.
    """
    count = 1
    for dim in params["dim_metadata"]:
        if dim["format"] == _DENSE:
            count *= int(dim["dense_size"])
        else:
            count = len(dim["array_indices"])
    return count


def _block(params, rank):
    """The block shape of a sparse tensor, in the tensor's own axes."""
    block = [1] * rank
    metadata = params["dim_metadata"]
    for position, axis in enumerate(params.get("block_map", ())):
        block[int(axis)] = int(metadata[rank + position]["dense_size"])
    return tuple(block)


def _delegated(graph, delegates):
    """Indices of the graph's nodes that a delegate node replaced.

    A delegate node stands for a connected part of the graph whose outside
    inputs are the delegate node's inputs. Walking back from its outputs
    through the tensors' producers, stopping at its inputs (and at tensors
    nobody produces: weights and graph inputs), visits exactly that part.
    """
    producer = {}
    for node in graph:
        for tensor in node["outputs"]:
            producer[int(tensor)] = node
    taken = set()
    for delegate in delegates:
        boundary = {int(tensor) for tensor in delegate["inputs"]}
        stack = [int(tensor) for tensor in delegate["outputs"]]
        seen = set()
        while stack:
            tensor = stack.pop()
            if tensor in seen or tensor in boundary or tensor not in producer:
                continue
            seen.add(tensor)
            node = producer[tensor]
            taken.add(node["index"])
            stack.extend(int(t) for t in node["inputs"] if t >= 0)
    return taken
