# syntax=docker/dockerfile:1
# RelayChat gateway image.
#   docker build -t relaychat/gateway:local .
# Build stage: install every dependency from the committed lockfile, bundle, then drop dev dependencies.
FROM node:22-slim AS build
WORKDIR /app
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
COPY package.json package-lock.json ./
RUN npm ci
COPY . .
RUN npm run build && npm prune --omit=dev
# uWebSockets.js ships binaries for every platform and Node ABI (~130 MB); keep the one this image runs.
RUN node -e "const fs=require('fs'),d='node_modules/uWebSockets.js/dist/bin',keep='uws_'+process.platform+'_'+process.arch+'_'+process.versions.modules+'.node';if(!fs.existsSync(d+'/'+keep))throw new Error('no '+keep);for(const f of fs.readdirSync(d))if(f!==keep)fs.rmSync(d+'/'+f)"

# Runtime stage: Node 22 on Debian slim (glibc, which the uWebSockets.js binaries need), no build tools, non-root.
FROM node:22-slim AS runtime
ENV NODE_ENV=production PORT=8080
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./package.json
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
# The image's `node` user (uid 1000); Kubernetes runs it with runAsNonRoot and the same uid.
USER 1000:1000
EXPOSE 8080
# Liveness only (the process answers HTTP); readiness (/readyz) is the load balancer's business.
# Slim images have no curl, so the check uses node's fetch.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM (the default stop signal) starts the drain; see docs/OPERATIONS.md.
STOPSIGNAL SIGTERM
CMD ["node", "dist/gateway/main.js"]
