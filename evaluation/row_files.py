"""Rows kept on disk: a dataset's reduction too large for memory, written batch by batch and read
back by image.

The ``best`` preset reduces an image to its cells' features (169 cells x 1,028 float32 for
SqueezeNet, 0.7 MB): 35 GB for the 50,000 ILSVRC validation photos. The evaluation appends
such arrays to a :class:`RowFile` and hands the protocol the file instead of an array; the
protocol reads the rows of a block of images at a time (``rows[indices]``), so the client's
memory holds a block, not the dataset.
"""
import os
import tempfile

import numpy as np


class RowFile:
    """Equal-shaped rows appended to a temporary file; ``rows[indices]`` reads some back.

    Parameters
    ----------
    folder : path
        The file system to write on; the file has no name there and disappears at
        :meth:`close` or when the process ends.
    row_shape : tuple of int
    dtype : numpy dtype

    Attributes
    ----------
    shape : tuple
        ``(rows written,) + row_shape``, as an array's.
    """

    def __init__(self, folder, row_shape, dtype):
        self.row_shape, self.dtype = tuple(row_shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        # A file without a name (unlinked at once): the system frees its space when the
        # process ends, however it ends. A named one outlived a killed 20,000-image run by
        # 13 GB, until its folder was removed by hand.
        self.stream = tempfile.TemporaryFile(dir=folder)
        self.count = 0

    @property
    def shape(self):
        return (self.count,) + self.row_shape

    def __len__(self):
        return self.count

    def append(self, rows):
        """Write rows ``(M,) + row_shape`` after the last."""
        rows = np.ascontiguousarray(rows, self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {rows.shape[1:]} do not fit a file of {self.row_shape}")
        self.stream.seek(0, os.SEEK_END)
        self.stream.write(rows.tobytes())
        self.count += len(rows)

    def __getitem__(self, indices):
        """The rows ``indices`` (a sequence of int) as an array ``(len(indices),) + row_shape``."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.count):
            raise IndexError(f"row indices must lie in 0..{self.count - 1}")
        self.stream.flush()
        out = np.empty((len(indices),) + self.row_shape, self.dtype)
        buffer = out.reshape(len(indices), -1).view(np.uint8)
        for k, i in enumerate(indices):
            buffer[k] = np.frombuffer(os.pread(self.stream.fileno(), self.row_bytes,
                                               int(i) * self.row_bytes), np.uint8)
        return out

    def subset(self, indices):
        """The rows ``indices``, still on disk: a :class:`RowSubset`."""
        return RowSubset(self, np.asarray(indices, np.int64))

    def close(self):
        """Remove the file (closing it frees its space)."""
        self.stream.close()


class RowSubset:
    """Some rows of a :class:`RowFile`, renumbered from 0, read on demand like the file's."""

    def __init__(self, rows, indices):
        self.rows, self.indices = rows, indices

    @property
    def shape(self):
        return (len(self.indices),) + self.rows.row_shape

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, indices):
        return self.rows[self.indices[np.asarray(indices, np.int64)]]

    def subset(self, indices):
        return RowSubset(self.rows, self.indices[np.asarray(indices, np.int64)])
