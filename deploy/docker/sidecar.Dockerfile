# syntax=docker/dockerfile:1
# MCP Mesh sidecar agent + Envoy image (also runs the ingress gateway: `mcpmesh gateway`).
#
#   docker build -f deploy/docker/sidecar.Dockerfile -t mcpmesh/sidecar:dev .                 # agent + Envoy
#   docker build -f deploy/docker/sidecar.Dockerfile --target demo -t mcpmesh/sidecar-demo:dev .
#                                                    # + @modelcontextprotocol/server-everything (compose demo)
#   docker run --rm mcpmesh/sidecar:dev sidecar --help
#   docker run --rm mcpmesh/sidecar:dev gateway --help
#
# ENTRYPOINT is the `mcpmesh` CLI (node /app/control-plane/src/cli.ts): `sidecar ...`, `gateway ...`,
# `token ...`, `policy ...`. The agent finds Envoy through ENVOY_BIN and starts and supervises it.
#
# Base: the official Envoy image (Ubuntu, glibc), with the official Node 24 binary copied in from the official
# Node image (a Debian/glibc build; it needs only glibc, libstdc++ and libgcc_s, which the Envoy image has).
# Both are multi-arch (linux/amd64, linux/arm64) and `COPY --from` picks the build platform's variant, so
# `docker buildx build --platform linux/amd64,linux/arm64` works without architecture-specific downloads.
# Build context: the repository root (see /.dockerignore, an allow-list).

ARG NODE_IMAGE=node:24.20.0-trixie-slim
ARG ENVOY_IMAGE=envoyproxy/envoy:v1.38.8

FROM ${NODE_IMAGE} AS node

# --- the mesh's production dependencies ---------------------------------------------------------------------
FROM node AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && npm cache clean --force

# --- demo MCP server (exact version, own lockfile) ----------------------------------------------------------
FROM node AS everything
WORKDIR /opt/server-everything
COPY deploy/docker/server-everything/package.json deploy/docker/server-everything/package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && npm cache clean --force

# --- sidecar agent + Envoy (default target) -----------------------------------------------------------------
FROM ${ENVOY_IMAGE} AS sidecar
LABEL org.opencontainers.image.title="mcpmesh-sidecar" \
      org.opencontainers.image.description="MCP Mesh sidecar agent and gateway runner, with Envoy" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=node /usr/local/bin/node /usr/local/bin/node
# A fixed, unprivileged uid/gid (Kubernetes runAsNonRoot needs a numeric USER). Every port the agent and
# Envoy use is above 1024, so no capability is needed.
# /run/mcpmesh/join: where the Compose demo mounts each agent's join-token volume. A fresh named volume takes
# the ownership and mode of the image directory it is first mounted on, so the one-shot that writes the token
# and the agent that reads it (both uid 10001) need no root step; 0700 keeps it to that uid.
RUN groupadd --system --gid 10001 mcpmesh \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin mcpmesh \
    && install -d -o 10001 -g 10001 -m 0700 /run/mcpmesh /run/mcpmesh/join \
    && node --version && envoy --version
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY control-plane/src ./control-plane/src
COPY sidecar/src ./sidecar/src
COPY protos ./protos
ENV NODE_ENV=production \
    ENVOY_BIN=/usr/local/bin/envoy
USER 10001:10001
# 15006 sidecar inbound (mesh-facing) / 8080 gateway listener / 15090 Envoy /stats/prometheus + /ready /
# 15020 agent /healthz + /readyz. (Envoy's admin API stays on 127.0.0.1:15000.)
EXPOSE 15006 15020 15090
# The agent's readiness for a sidecar; a gateway container overrides this (see deploy/compose).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:15020/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "/app/control-plane/src/cli.ts"]
CMD ["--help"]

# --- demo: the sidecar image plus server-everything, for the Compose stack ---------------------------------
# Used both as the MCP server container (entrypoint overridden to run server-everything over Streamable
# HTTP) and by the stdio node, whose agent spawns `node $SERVER_EVERYTHING stdio` through the bridge.
FROM sidecar AS demo
COPY --from=everything /opt/server-everything /opt/server-everything
ENV SERVER_EVERYTHING=/opt/server-everything/node_modules/@modelcontextprotocol/server-everything/dist/index.js

# The last stage is what a plain `docker build` produces: the sidecar image without the demo server.
FROM sidecar
