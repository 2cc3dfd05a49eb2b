"""Reading pickles without running code: a restricted unpickler that rebuilds only numpy arrays, numpy
scalars and plain containers (dict, list, tuple, str, numbers; builtins dict/list by name).

A pickle names the callables that rebuild its objects; `pickle.load` imports and calls whatever it names
(`os.system` included). Here every name outside a short list of numpy array reconstructors is refused
before anything is imported, so a file that is not a plain pickled array or dict of arrays (FACED's
`.pkl` trials, BrainGB's `ABIDE.npy`) cannot run anything: it is a one-line error instead. A `.npy`
whose dtype is `object` (what `np.save` writes for a dict) is its header followed by such a pickle.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol 5 (Python 3.14's default) rebuilds arrays so
    ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "dict"),
    ("builtins", "list"),
}


class UnsafePickle(ValueError):
    """The stream names something other than numpy arrays and plain containers, or is not a pickle."""


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED:
            raise UnsafePickle(f"refusing {module}.{name}: only numpy arrays, dicts and lists are read")
        return super().find_class(module, name)


def loads(data: bytes) -> object:
    """Unpickle `data` (a plain pickle, or a `.npy` holding a pickled object) without running code."""
    stream = io.BytesIO(data)
    if data[:6] == b"\x93NUMPY":
        try:
            version = np.lib.format.read_magic(stream)
            header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            _, _, dtype = header(stream)
        except ValueError as exc:
            raise UnsafePickle(f"not a valid .npy header ({exc})") from None
        if not dtype.hasobject:
            stream.seek(0)
            return np.load(stream, allow_pickle=False)
    try:
        obj = _Restricted(stream).load()
    except UnsafePickle:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise UnsafePickle(f"not a readable pickle ({exc})") from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        return obj.item()  # np.save(dict) stores the dict in a 0-d object array
    return obj
