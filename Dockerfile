# Wisegate: `wisegate serve` (the default command), `wisegate worker`, `wisegate migrate`, …
#
#   docker build -t wisegate .
#   docker run -p 8080:8080 -v wisegate-data:/var/lib/wisegate wisegate
#
# The builder stage compiles llama-cpp-python (the embedded model's engine) into a wheel and installs
# Wisegate into a virtual environment; the runtime stage copies that environment onto the same base and
# runs it as an unprivileged user. Build arguments (none is kept in the image):
#   BASE             any Debian 12 (bookworm) image; default docker.io/library/debian:bookworm-slim.
#                    Without a registry, one made with debootstrap and `podman import`
#                    (deploy/check-image.sh, docs/operations.md "Container images").
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_CERT
#                    the package index pip uses (a private mirror) and a CA bundle for a TLS-inspecting
#                    proxy; unset, pip uses PyPI with the base's CA certificates.
#   CMAKE_ARGS       llama.cpp's build options. Unset, llama.cpp compiles for the build machine's CPU
#                    (GGML_NATIVE): fastest there, and may stop with SIGILL on an older CPU. For an
#                    image to run elsewhere, choose the CPU level, e.g. CMAKE_ARGS=-DGGML_NATIVE=OFF
#                    (llama.cpp's options; not tried by deploy/check-image.sh).
ARG BASE=docker.io/library/debian:bookworm-slim

FROM ${BASE} AS builder
ARG PIP_CERT
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG CMAKE_ARGS
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential cmake \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/wisegate
# The engine first, on its own layer: it takes minutes to compile and changes rarely.
RUN /opt/wisegate/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels llama-cpp-python==0.3.36 \
 && /opt/wisegate/bin/pip install --no-cache-dir /wheels/llama_cpp_python-*.whl
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/wisegate/bin/pip install --no-cache-dir '.[tracing]'

FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/wisegate --create-home wisegate
COPY --from=builder /opt/wisegate /opt/wisegate
ENV PATH=/opt/wisegate/bin:$PATH \
    WISEGATE_HOST=0.0.0.0 \
    WISEGATE_PORT=8080 \
    WISEGATE_DATA_DIR=/var/lib/wisegate
USER wisegate
WORKDIR /var/lib/wisegate
VOLUME /var/lib/wisegate
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)"
ENTRYPOINT ["wisegate"]
CMD ["serve"]
