# Every Python image of coinpulse (the services, the simulators and the one-shot `coinpulse init`): the uv workspace
# with the named packages installed. Built from the repository root, e.g.
#   docker build -f docker/python-service.Dockerfile --build-arg PACKAGES=coinpulse-sink .
# PACKAGES: uv workspace package names, space separated (uv.lock pins everything; --frozen never re-resolves).
# The image has no service command of its own: compose.yaml gives each service its `command:`.
FROM python:3.11-slim
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy PYTHONUNBUFFERED=1 COINPULSE_REPO_ROOT=/app
COPY . .
# declared after COPY so every image shares the layers above; RUN reads it from the environment
ARG PACKAGES
RUN set -eu; \
    test -n "${PACKAGES:-}" || { echo "build arg PACKAGES (uv workspace package names) is required" >&2; exit 1; }; \
    set --; \
    for package in $PACKAGES; do set -- "$@" --package "$package"; done; \
    uv sync --frozen --no-dev "$@"
ENV PATH="/app/.venv/bin:$PATH"
