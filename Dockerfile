# One image for the API, the worker and the migration job.
#
# torch comes from PyPI, whose Linux wheels carry CUDA: the worker uses the GPU that compose
# reserves for it, and the same image runs on a CPU-only host. For a smaller CPU-only image:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KGAN_DATA_DIR=/data \
    KGAN_ARTIFACT_DIR=/data/artifacts

ARG TORCH_INDEX_URL=""
# torch first, in its own layer: it is most of the image and changes least often.
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.14.1 torchvision==0.29.1

WORKDIR /app
COPY pyproject.toml README.md NOTICE alembic.ini ./
COPY kgan_core ./kgan_core
COPY kgan_service ./kgan_service
COPY api ./api
COPY worker ./worker
COPY migrations ./migrations
# Editable, so alembic.ini and migrations/ stay beside the code that reads them.
RUN pip install -e . \
    && useradd --create-home --uid 1000 kgan \
    && mkdir -p /data/artifacts \
    && chown -R kgan /data
USER kgan

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["uvicorn", "--factory", "api.main:create_app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
