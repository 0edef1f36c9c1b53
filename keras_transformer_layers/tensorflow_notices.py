"""Drops TensorFlow's known start-up notices from stderr, passes every other line.

On a CPU-only machine TensorFlow 2.21 writes these lines to stderr, and no
setting hides them without hiding real errors too:

- `WARNING: All log messages before absl::InitializeLog() ...`, then
  `I0000 ... port.cc] oneDNN custom operations are on ...` and
  `I0000 ... cudart_stub.cc] Could not find cuda drivers ...`, twice, while
  `import tensorflow` runs: they come before TensorFlow reads
  `TF_CPP_MIN_LOG_LEVEL`, so no level hides them (`TF_ENABLE_ONEDNN_OPTS=0`
  hides the first by turning oneDNN off, which changes the computation);
- `E0000 ... cuda_platform.cc] failed call to cuInit: ... UNKNOWN ERROR (303)`
  when the first op runs, and `E0000 ... util.cc] oneDNN supports DT_BOOL
  only on platforms with AVX-512 ...` at the first graph that uses one: only
  `TF_CPP_MIN_LOG_LEVEL=3` hides them, and with them every error TensorFlow
  logs;
- `INFO: Created TensorFlow Lite XNNPACK delegate for CPU.` from LiteRT.

`filter_stderr` points the process' stderr (file descriptor 2, so C++ writes
too) at a small child process that copies every line but those to the real
stderr. The child reads until the last writer closes, so a crash loses no
line. Stdlib only: `examples/demo.py` starts it before importing TensorFlow.
"""

import atexit
import os
import subprocess
import sys

# One regular expression per notice above; a line is dropped when one matches it whole.
NOTICES = (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\. .*",
    r"I\d{4} [\d:.]+ +\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your "
    r"machine, GPU will not be used\.",
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

    Call it before `import tensorflow` to catch the import-time notices too.
    At exit stderr is restored and the child is given the rest to copy.

    Returns:
        The child `subprocess.Popen`.

    Example:

    ```python
    from keras_transformer_layers import tensorflow_notices

    tensorflow_notices.filter_stderr()
    ```
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
