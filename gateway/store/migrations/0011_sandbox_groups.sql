-- Groups as the sandbox's simulated users hold them (DESIGN §4.10): their Megolm sessions,
-- vodozemac-pickled under the sandbox key (never in clear), and each member's view of a group.

-- Room keys a member received: one inbound session per (member, group, session id).
CREATE TABLE sandbox_group_inbound (
    user_uri TEXT NOT NULL,
    group_uri TEXT NOT NULL,
    session_id TEXT NOT NULL,
    pickle TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_uri, group_uri, session_id)
);

-- The session a member sends with in a group, and the epoch it was shared in.
CREATE TABLE sandbox_group_outbound (
    user_uri TEXT NOT NULL,
    group_uri TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    session_id TEXT NOT NULL,
    pickle TEXT NOT NULL,
    PRIMARY KEY (user_uri, group_uri)
);

-- The group as a member last heard of it (epoch; members sealed under the sandbox key).
CREATE TABLE sandbox_group_views (
    user_uri TEXT NOT NULL,
    group_uri TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    sealed {{blob}} NOT NULL,
    PRIMARY KEY (user_uri, group_uri)
);

-- Group items a member took in (room keys leave nothing in the inbox): a redelivery is a no-op.
CREATE TABLE sandbox_group_items (
    user_uri TEXT NOT NULL,
    item_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (user_uri, item_id)
);
