# syntax=docker/dockerfile:1
# MCP Mesh control plane image.
#
#   docker build -f deploy/docker/control-plane.Dockerfile -t mcpmesh/control-plane:dev .
#   docker run --rm -p 18000:18000 -p 18001:18001 mcpmesh/control-plane:dev        # embedded example registry
#   docker run --rm -e CONSUL_HTTP_ADDR=http://consul:8500 ... mcpmesh/control-plane:dev   # Consul source
#
# Build context: the repository root (see /.dockerignore, an allow-list).
# Multi-arch: only official multi-arch base images and pure-JavaScript dependencies (no native addons, no
# architecture-specific downloads), so `docker buildx build --platform linux/amd64,linux/arm64` works as is.
# Runs TypeScript directly (Node 24 type stripping): there is no build step and no dev dependency in the image.
# The devDependency `node` (the Node 24 binary the repo pins for development) is omitted: the base image
# provides Node 24.

ARG NODE_IMAGE=node:24.20.0-alpine3.24

# --- production dependencies only --------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no production dependency needs an install script (pure JS); this also keeps a
# compromised package from running code at build time.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && npm cache clean --force

# --- runtime -------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS control-plane
LABEL org.opencontainers.image.title="mcpmesh-control-plane" \
      org.opencontainers.image.description="MCP Mesh xDS control plane (ADS, admin, MCP authorizer, dev OAuth issuer)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
WORKDIR /app
# Code and dependencies are owned by root and read-only for the runtime user.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY control-plane/src ./control-plane/src
# The `mcpmesh` CLI (control-plane/src/cli.ts: token, policy explain) imports the sidecar sources.
COPY sidecar/src ./sidecar/src
COPY protos ./protos
# Defaults for a standalone `docker run`: the embedded example registry (main.ts's default path) and the
# example policy (only used when MCPMESH_POLICY / --policy points at it).
COPY deploy/registry.example.yaml deploy/policy.example.yaml ./deploy/
# An unprivileged uid by number (Kubernetes' runAsNonRoot can verify it), the same as the sidecar image and
# deploy/k8s's runAsUser; the code is root-owned and world-readable, the process writes nothing.
USER 10001:10001
# xDS (ADS, gRPC) / admin HTTP (healthz, readyz, metrics, debug, dev OAuth) / MCP authorizer + tools/list filter
EXPOSE 18000 18001 18002
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.MCPMESH_ADMIN_PORT||'18001')+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "/app/control-plane/src/main.ts"]
