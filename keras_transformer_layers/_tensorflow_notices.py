"""Drops TensorFlow's known notices from stderr, passes every other line.

A private helper of `python -m keras_transformer_layers.export` and
`examples/demo.py`, not part of the public API. On a CPU-only machine
TensorFlow 2.21 writes these lines to stderr after it has loaded, and no
setting hides them without hiding real errors too:

- `E0000 ... cuda_platform.cc] failed call to cuInit: ... UNKNOWN ERROR (303)`
  when the first op runs, and `E0000 ... util.cc] oneDNN supports DT_BOOL
  only on platforms with AVX-512 ...` at the first graph that uses one: only
  `TF_CPP_MIN_LOG_LEVEL=3` hides them, and with them every error TensorFlow
  logs;
- `INFO: Created TensorFlow Lite XNNPACK delegate for CPU.` from LiteRT.

The notices of `import tensorflow` itself come before any code of this
package runs (importing the package imports Keras, and with it TensorFlow),
so they are not filtered.

`filter_stderr` points the process' stderr (file descriptor 2, so C++ writes
too) at a small child process that copies every line but those to the real
stderr. The child reads until the last writer closes, so a crash loses no
line.
"""

import atexit
import os
import subprocess
import sys

# One regular expression per notice above; a line is dropped when one matches it whole.
NOTICES = (
    r"E\d{4} [\d:.]+ +\d+ cuda_platform\.cc:\d+\] failed call to cuInit: INTERNAL: CUDA "
    r"error: Failed call to cuInit: UNKNOWN ERROR \(303\)",
    r"E\d{4} [\d:.]+ +\d+ util\.cc:\d+\] oneDNN supports DT_[A-Z0-9]+ only on platforms "
    r"with AVX-512\. Falling back to the default Eigen-based implementation if present\.",
    r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.",
)

# The child: stdin is the pipe, stdout the real stderr. Bytes, so no line is
# lost to a decoding error; flushed per line, so messages are not held back.
_FILTER = """
import re, sys
notice = re.compile("|".join(f"(?:{n})" for n in sys.argv[1:]))
for line in sys.stdin.buffer:
    if not notice.fullmatch(line.decode("utf-8", "replace").rstrip("\\r\\n")):
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
"""


def filter_stderr():
    """Sends stderr through a child process that drops the `NOTICES` lines.

    At exit stderr is restored and the child is given the rest to copy.

    Returns:
        The child `subprocess.Popen`.
    """
    sys.stderr.flush()
    real_stderr = os.dup(2)
    child = subprocess.Popen(
        [sys.executable, "-I", "-c", _FILTER, *NOTICES],
        stdin=subprocess.PIPE,
        stdout=real_stderr,
        stderr=real_stderr,
    )
    os.dup2(child.stdin.fileno(), 2)

    def restore():
        sys.stderr.flush()
        os.dup2(real_stderr, 2)
        child.stdin.close()  # the last writer: the child copies what is left and ends
        child.wait(timeout=60)
        os.close(real_stderr)

    atexit.register(restore)
    return child
