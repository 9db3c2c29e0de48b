"""The container's health check: exit 0 when the service on this container answers /health/ready with 200.

The runtime image has no curl, so Docker's HEALTHCHECK and docker-compose.yml run this with the image's Python.
It uses only the standard library, and reads the same DIGIT_SERVE_PORT the server listens on.
"""

import os
import sys
import urllib.error
import urllib.request

PORT = os.environ.get("DIGIT_SERVE_PORT", "8000")
URL = f"http://127.0.0.1:{PORT}/health/ready"
TIMEOUT_SECONDS = 2.0


def main() -> int:
    try:
        with urllib.request.urlopen(URL, timeout=TIMEOUT_SECONDS) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"not ready: {URL}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
