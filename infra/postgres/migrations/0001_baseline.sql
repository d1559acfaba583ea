-- 0001: the schema as the release before migrations left it (its start-up DDL), and the way
-- a database that release made is adopted: every statement is a no-op on what is already
-- there, so running it over such a database changes nothing but what an even older release
-- lacked (the columns added since, the log order), and keeps every row.
-- Unqualified names land in the URL's schema (its search_path), as the stores address them;
-- the read models are in "public", where `projections.schema.DEFAULT_SCHEMA` reads them.

-- The event store: eventsourcing's own DDL for the application "Trading" (as the library's
-- CREATE_TABLE would write it; that switch is off), plus the log order and the roster.
DO $$
BEGIN
    CREATE TYPE stored_event_uuid AS (
        originator_id uuid, originator_version bigint, topic text, state bytea
    );
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
CREATE TABLE IF NOT EXISTS trading_events (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version)
) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01
);
CREATE UNIQUE INDEX IF NOT EXISTS trading_events_notification_id_idx
    ON trading_events (notification_id ASC);
-- The library's insert function (unused: we insert arrays ourselves, without its NOTIFY).
CREATE OR REPLACE FUNCTION es_insert_events_uuid(events stored_event_uuid[])
RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$
BEGIN
    SET LOCAL lock_timeout = '0s';
    NOTIFY "trading_events";
    RETURN QUERY
    INSERT INTO trading_events AS t (originator_id, originator_version, topic, state)
    SELECT originator_id, originator_version, topic, state FROM unnest(events)
    RETURNING notification_id;
END;
$BODY$;
-- The log order (docs/architecture.md, "The log order"): rows written before the column
-- existed get 0 (a constant default, no table rewrite), every later row its transaction.
ALTER TABLE trading_events ADD COLUMN IF NOT EXISTS tx_id xid8 NOT NULL DEFAULT '0';
ALTER TABLE trading_events ALTER COLUMN tx_id SET DEFAULT pg_current_xact_id();
CREATE INDEX IF NOT EXISTS trading_events_log_order ON trading_events (tx_id, notification_id);
CREATE TABLE IF NOT EXISTS trading_snapshots (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    PRIMARY KEY (originator_id, originator_version)
) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01
);
-- Filled from the history by `strategies db migrate` when a store older than it is adopted.
CREATE TABLE IF NOT EXISTS trading_roster (
    trader_id uuid PRIMARY KEY,
    strategy_id uuid NOT NULL,
    participant_code text NOT NULL,
    status text NOT NULL,
    auto_rebalance boolean NOT NULL,
    version bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS trading_roster_scope
    ON trading_roster (strategy_id, status, participant_code);

-- The outbox relay's place in the log: (tx_id, position); an older relay's N is (0, N).
CREATE TABLE IF NOT EXISTS relay_positions (
    name text PRIMARY KEY,
    position bigint NOT NULL,
    tx_id bigint NOT NULL DEFAULT 0
);
ALTER TABLE relay_positions ADD COLUMN IF NOT EXISTS tx_id bigint NOT NULL DEFAULT 0;

-- Platforms and their api keys (secrets sealed with the master key).
CREATE TABLE IF NOT EXISTS platforms (
    platform_id text PRIMARY KEY,
    name text NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS platform_api_keys (
    api_key text PRIMARY KEY,
    platform_id text NOT NULL REFERENCES platforms (platform_id),
    secret_sealed bytea NOT NULL,
    passphrase_hash text NOT NULL,
    status text NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX IF NOT EXISTS platform_api_keys_by_platform ON platform_api_keys (platform_id);

-- Signatures already used (api.replay_guard).
CREATE TABLE IF NOT EXISTS api_signatures_seen (
    api_key text NOT NULL,
    digest bytea NOT NULL,
    request_id text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key, digest)
);
CREATE INDEX IF NOT EXISTS api_signatures_seen_by_age ON api_signatures_seen (seen_at);

-- Which processes run which roles (infra.postgres.heartbeats).
CREATE TABLE IF NOT EXISTS role_heartbeats (
    process_id uuid NOT NULL,
    role text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    last_progress timestamptz,
    PRIMARY KEY (process_id, role)
);

-- Webhook subscriptions and their delivery log (infra.postgres.webhooks_store).
CREATE TABLE IF NOT EXISTS webhook_subscriptions (
    id uuid PRIMARY KEY,
    platform_id text NOT NULL,
    url text NOT NULL,
    payload_types text[] NOT NULL,
    secret_sealed bytea NOT NULL,
    legacy_headers boolean NOT NULL DEFAULT false,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhook_subscriptions_by_platform
    ON webhook_subscriptions (platform_id, active);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id uuid PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES webhook_subscriptions (id),
    platform_id text NOT NULL,
    payload_type text NOT NULL,
    event_position bigint NOT NULL,
    object_id uuid NOT NULL,
    body text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    round_attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    last_error text NOT NULL DEFAULT '',
    last_latency_ms integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    delivered_at timestamptz
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due
    ON webhook_deliveries (subscription_id, next_attempt_at) WHERE status = 'pending';
-- The dashboard's dead letters, without scanning every delivery.
CREATE INDEX IF NOT EXISTS webhook_deliveries_dead
    ON webhook_deliveries (last_attempt_at DESC) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS webhook_deliveries_log
    ON webhook_deliveries (subscription_id, created_at DESC, id);

-- The read models (projections/*.py describe their columns; a test checks both agree).
-- (tx_id, position) is the furthest event applied, in the relay's publish order.
CREATE TABLE IF NOT EXISTS public.projection_offsets (
    projection text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    position bigint NOT NULL,
    tx_id bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (projection, topic, partition)
);
ALTER TABLE public.projection_offsets ADD COLUMN IF NOT EXISTS tx_id bigint NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS public.strategies (
    id uuid NOT NULL PRIMARY KEY,
    platform_id text NOT NULL,
    request_id uuid NOT NULL,
    quoted_currency text NOT NULL,
    metadata jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    source_id uuid NOT NULL,
    version integer NOT NULL
);
ALTER TABLE public.strategies ADD COLUMN IF NOT EXISTS model jsonb;
ALTER TABLE public.strategies ADD COLUMN IF NOT EXISTS policy jsonb;
ALTER TABLE public.strategies ADD COLUMN IF NOT EXISTS policy_run jsonb;
ALTER TABLE public.strategies ADD COLUMN IF NOT EXISTS status text;
ALTER TABLE public.strategies ADD COLUMN IF NOT EXISTS broken_assets jsonb;
CREATE INDEX IF NOT EXISTS strategies_by_platform
    ON public.strategies (platform_id, created_at DESC, id);

CREATE TABLE IF NOT EXISTS public.traders (
    id uuid NOT NULL PRIMARY KEY,
    platform_id text NOT NULL,
    strategy_id uuid NOT NULL,
    participant_code text NOT NULL,
    account_label text NOT NULL,
    auto_rebalance boolean NOT NULL,
    status text NOT NULL,
    positions jsonb NOT NULL,
    cash numeric NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    source_id uuid NOT NULL,
    version integer NOT NULL
);
CREATE INDEX IF NOT EXISTS traders_by_platform
    ON public.traders (platform_id, created_at DESC, id);
CREATE INDEX IF NOT EXISTS traders_by_strategy_id
    ON public.traders (platform_id, strategy_id, created_at DESC, id);
CREATE INDEX IF NOT EXISTS traders_by_participant_code
    ON public.traders (platform_id, participant_code, created_at DESC, id);
CREATE INDEX IF NOT EXISTS traders_by_auto_rebalance
    ON public.traders (platform_id, auto_rebalance, created_at DESC, id);
CREATE INDEX IF NOT EXISTS traders_scope ON public.traders (strategy_id, participant_code);

CREATE TABLE IF NOT EXISTS public.operations (
    id uuid NOT NULL PRIMARY KEY,
    platform_id text NOT NULL,
    strategy_id uuid NOT NULL,
    request_id uuid NOT NULL,
    type text NOT NULL,
    status text NOT NULL,
    status_reason text NOT NULL,
    allocations jsonb NOT NULL,
    participant_count integer NOT NULL,
    counts jsonb NOT NULL,
    locked_prices jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    source_id uuid NOT NULL,
    version integer NOT NULL
);
ALTER TABLE public.operations ADD COLUMN IF NOT EXISTS parameters jsonb;
ALTER TABLE public.operations ADD COLUMN IF NOT EXISTS quoted_currency text;
ALTER TABLE public.operations ADD COLUMN IF NOT EXISTS chunk_count integer;
ALTER TABLE public.operations ADD COLUMN IF NOT EXISTS chunks_checked integer;
ALTER TABLE public.operations ADD COLUMN IF NOT EXISTS chunks_settled integer;
CREATE INDEX IF NOT EXISTS operations_by_platform
    ON public.operations (platform_id, created_at DESC, id);
CREATE INDEX IF NOT EXISTS operations_by_strategy_id
    ON public.operations (platform_id, strategy_id, created_at DESC, id);
CREATE INDEX IF NOT EXISTS operations_by_type
    ON public.operations (platform_id, type, created_at DESC, id);
CREATE INDEX IF NOT EXISTS operations_by_status
    ON public.operations (platform_id, status, created_at DESC, id);
CREATE INDEX IF NOT EXISTS operations_by_request ON public.operations (platform_id, request_id);

CREATE TABLE IF NOT EXISTS public.operation_chunks (
    id uuid NOT NULL PRIMARY KEY,
    operation_id uuid NOT NULL,
    platform_id text,
    strategy_id uuid,
    source_id uuid NOT NULL,
    version integer NOT NULL
);

CREATE TABLE IF NOT EXISTS public.executions (
    id uuid NOT NULL PRIMARY KEY,
    platform_id text,
    strategy_id uuid,
    operation_id uuid NOT NULL,
    trader_id uuid,
    participant_code text NOT NULL,
    account_label text NOT NULL,
    status text NOT NULL,
    status_reason text NOT NULL,
    status_reasons text[] NOT NULL,
    instructions jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    source_id uuid NOT NULL,
    version integer NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_platform
    ON public.executions (platform_id, created_at DESC, id);
CREATE INDEX IF NOT EXISTS executions_by_strategy_id
    ON public.executions (platform_id, strategy_id, created_at DESC, id);
CREATE INDEX IF NOT EXISTS executions_by_operation_id
    ON public.executions (platform_id, operation_id, created_at DESC, id);
CREATE INDEX IF NOT EXISTS executions_by_trader_id
    ON public.executions (platform_id, trader_id, created_at DESC, id);
CREATE INDEX IF NOT EXISTS executions_by_participant_code
    ON public.executions (platform_id, participant_code, created_at DESC, id);
CREATE INDEX IF NOT EXISTS executions_by_status
    ON public.executions (platform_id, status, created_at DESC, id);
CREATE INDEX IF NOT EXISTS executions_incomplete
    ON public.executions (operation_id) WHERE platform_id IS NULL;

CREATE TABLE IF NOT EXISTS public.prices (
    id uuid NOT NULL PRIMARY KEY,
    platform_id text NOT NULL,
    quoted_currency text NOT NULL,
    asset text NOT NULL,
    price numeric NOT NULL,
    priced_at timestamptz NOT NULL,
    event_type text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    source_id uuid NOT NULL,
    version integer NOT NULL
);
CREATE INDEX IF NOT EXISTS prices_by_currency ON public.prices (platform_id, quoted_currency, asset);

-- Events the read models could not apply (projections.poisoned).
CREATE TABLE IF NOT EXISTS public.projection_poisoned_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection text NOT NULL,
    event_key text NOT NULL,
    position bigint,
    aggregate_id uuid,
    aggregate_version integer,
    event_type text,
    topic text,
    partition integer,
    "offset" bigint,
    record bytea NOT NULL,
    error_class text NOT NULL,
    error_message text NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    resolved_at timestamptz,
    UNIQUE (projection, event_key)
);
CREATE INDEX IF NOT EXISTS projection_poisoned_events_open
    ON public.projection_poisoned_events (projection, aggregate_id, position)
    WHERE status <> 'resolved';
