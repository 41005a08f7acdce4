# syntax=docker/dockerfile:1
# The inference server image, used for both arms (ROLE=stable|canary).
#
#   docker build -t inference-server:local .
#   docker compose up --build            # the whole A/B stack (docker-compose.yml)
#
# Stage 1 compiles the server (and the health check) with the dev dependencies;
# stage 2 holds production dependencies, the compiled code and the demo models,
# and runs as the unprivileged `node` user.
#
# Tested by `npm run test:deploy` (podman build --format docker: the OCI format
# has no HEALTHCHECK). Where no registry is reachable, scripts/lib/deploy/base-images.ts
# builds a local stand-in for NODE_IMAGE first (see README, Docker).
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# onnxruntime-node's install script would download CUDA binaries; the CPU ones ship in the package.
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json .npmrc ./
COPY deploy/images/verify-install.mjs deploy/images/
# Not `npm ci`: see scripts/dev/bootstrap.mjs (the lock omits other platforms' optional
# binaries); --no-save installs the locked tree without touching it. npm can exit 0
# with a broken tree ("Exit handler never called!"), so the tree is verified.
RUN npm install --no-save --no-audit --no-fund --loglevel=error \
  && node deploy/images/verify-install.mjs
COPY tsconfig.json ./
COPY deploy/tsconfig.image.json deploy/
COPY server/ server/
COPY scripts/ops/healthcheck.ts scripts/ops/
COPY scripts/lib/cli.ts scripts/lib/
RUN npx tsc -p deploy/tsconfig.image.json

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    ONNXRUNTIME_NODE_INSTALL=skip
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY deploy/images/verify-install.mjs deploy/images/
# onnxruntime-node ships binaries for six platforms (~290 MB); keep this one's,
# then verify the tree (and that this platform's binding still loads).
RUN npm install --no-save --omit=dev --no-audit --no-fund --loglevel=error \
  && arch="$(node -p process.arch)" \
  && for d in node_modules/onnxruntime-node/bin/napi-v*/*/*; do \
       case "$d" in */linux/"$arch") ;; *) rm -rf "$d" ;; esac; \
     done \
  && node deploy/images/verify-install.mjs --omit=dev \
  && rm -rf deploy \
  && npm cache clean --force
COPY --from=build /app/dist/ dist/
# Reflection serves this descriptor set (server/reflection.ts reads it next to the sources).
COPY server/generated/descriptors.binpb server/generated/
COPY models/ models/
# Containers log JSON to stdout only (`docker compose logs`); listen on all
# interfaces inside the container network.
ENV GRPC_HOST=0.0.0.0 \
    GRPC_PORT=50051 \
    METRICS_HOST=0.0.0.0 \
    METRICS_PORT=9464 \
    MODEL_ROOT=/app/models \
    LOG_DIR= \
    LOG_STDOUT=true
USER node
EXPOSE 50051 9464
# The same grpc.health.v1 check Envoy runs: healthy only while SERVING.
HEALTHCHECK --interval=5s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "dist/scripts/ops/healthcheck.js"]
# node is PID 1 and handles SIGTERM itself (server/main.ts): health NOT_SERVING,
# drain DRAIN_MS, then close. docker-compose.yml gives it stop_grace_period.
CMD ["node", "dist/server/main.js"]
