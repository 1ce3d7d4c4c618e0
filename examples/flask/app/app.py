"""The kiln Flask example: a small JSON service on port 8080.

Debian's python3-flask from the repositories, nothing from PyPI; the image
has no shell and a read-only root.
"""
import os
import platform
import ssl

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify(
        service="kiln-flask-example",
        python=platform.python_version(),
        openssl=ssl.OPENSSL_VERSION,
        user=os.getuid(),
    )


@app.get("/health")
def health():
    return "ok\n"


if __name__ == "__main__":
    # Flask's development server is enough for the example; a real service
    # would add gunicorn (python3-gunicorn) to [packages].include.
    app.run(host="0.0.0.0", port=8080)
