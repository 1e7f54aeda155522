#!/bin/sh
# The values the orders example reads. make run and the e2e tests run these
# lines against their own Consul and Vault dev servers; on a real cluster, run
# them with CONSUL_HTTP_ADDR and VAULT_ADDR set.
set -e
consul kv put apps/orders/db/host orders-db.orders.svc
consul kv put apps/orders/env/LOG_LEVEL info
consul kv put apps/orders/env/FEATURE_FLAGS express-checkout
vault kv put -mount=secret orders/db password=example-only-not-a-secret
