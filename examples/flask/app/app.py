"""The kiln Flask example: a small JSON service on port 8080.

Debian's python3-flask from the repositories, nothing from PyPI; the image
has no shell and a read-only root.
"""
import os
import platform
import ssl

import redis  # Debian's python3-redis
from flask import Flask, jsonify

app = Flask(__name__)

# cache.internal is a name the image declares in [baseline].egress; under
# `kiln serve` it resolves to a loopback address of the instance's own
# network namespace, where kiln forwards to wherever deploy.toml maps it.
CACHE = redis.Redis(
    host="cache.internal", port=6379, socket_timeout=2, socket_connect_timeout=2
)
SECRET = "/run/secrets/DB_PASSWORD"


@app.get("/")
def index():
    return jsonify(
        service="kiln-flask-example",
        python=platform.python_version(),
        openssl=ssl.OPENSSL_VERSION,
        user=os.getuid(),
    )


@app.get("/visits")
def visits():
    try:
        n = CACHE.incr("kiln-example:visits")
    except redis.RedisError as e:
        return jsonify(error=f"cache.internal:6379: {e}"), 503
    return jsonify(visits=n)


@app.get("/secret")
def secret():
    """What the service knows about its secret, never the value itself."""
    try:
        st = os.stat(SECRET)
        with open(SECRET, "rb") as f:
            size = len(f.read())
    except OSError as e:
        return jsonify(error=f"{SECRET}: {e.strerror}"), 404
    return jsonify(
        name="DB_PASSWORD", bytes=size, mode=oct(st.st_mode & 0o777), uid=st.st_uid
    )


@app.get("/health")
def health():
    return "ok\n"


if __name__ == "__main__":
    # Flask's development server is enough for the example; a real service
    # would add gunicorn (python3-gunicorn) to [packages].include.
    app.run(host="0.0.0.0", port=8080)
