# linux/amd64 only: Forge runs no other platform.
FROM --platform=linux/amd64 python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOST=0.0.0.0
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY app/ app/

# UID/GID 1000, and nothing written at run time: the root file system is read-only.
RUN groupadd --gid 1000 app && useradd --uid 1000 --gid 1000 --no-create-home app
USER 1000:1000

# uvicorn listens on $SERVER_PORT (8080 unless Forge says otherwise), drains on SIGTERM.
CMD ["python", "-m", "app.container"]
