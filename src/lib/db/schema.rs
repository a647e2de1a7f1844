//! The one schema both backends share (migrations/postgres and migrations/sqlite
//! create the same tables with each dialect's types).
// The `table!` macro writes public modules and columns without documentation.
#![allow(missing_docs)]

diesel::table! {
    tenants (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        widget_key -> Text,
        settings -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        identity_secret_enc -> Nullable<Text>,
        plan_code -> Text,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        tenant_id -> Nullable<Text>,
        name -> Text,
        key_hash -> Text,
        prefix -> Text,
        last4 -> Text,
        scopes -> Text,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
        last_used_at -> Nullable<BigInt>,
        issued_by -> Nullable<Text>,
    }
}

diesel::table! {
    visitors (id) {
        id -> Text,
        tenant_id -> Text,
        token_hash -> Text,
        locale -> Nullable<Text>,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        page_url -> Nullable<Text>,
        external_user_id -> Nullable<Text>,
        name -> Nullable<Text>,
        email -> Nullable<Text>,
        environment -> Text,
        erased_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    conversations (id) {
        id -> Text,
        tenant_id -> Text,
        visitor_id -> Text,
        status -> Text,
        last_seq -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        closed_at -> Nullable<BigInt>,
        telegram_topic_id -> Nullable<BigInt>,
        telegram_topic_closed -> Bool,
        subject -> Nullable<Text>,
        telegram_topic_name -> Nullable<Text>,
        environment -> Text,
        updated_second -> BigInt,
    }
}

diesel::table! {
    messages (id) {
        id -> Text,
        tenant_id -> Text,
        conversation_id -> Text,
        seq -> BigInt,
        direction -> Text,
        author -> Nullable<Text>,
        body -> Text,
        client_msg_id -> Nullable<Text>,
        created_at -> BigInt,
        edited_at -> Nullable<BigInt>,
        telegram_message_id -> Nullable<BigInt>,
        erased_at -> Nullable<BigInt>,
        reply_to -> Nullable<Text>,
    }
}

diesel::table! {
    telegram_configs (tenant_id) {
        tenant_id -> Text,
        bot_token_enc -> Text,
        webhook_secret_enc -> Text,
        bot_id -> BigInt,
        bot_username -> Text,
        group_chat_id -> BigInt,
        default_topic_id -> Nullable<BigInt>,
        can_manage_topics -> Bool,
        enabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        delete_topics_on_retention -> Bool,
        mode -> Text,
    }
}

diesel::table! {
    telegram_polls (tenant_id) {
        tenant_id -> Text,
        bot_id -> BigInt,
        poll_offset -> Nullable<BigInt>,
        poll_offset_at -> Nullable<BigInt>,
        leased_by -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        last_poll_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        last_error_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    telegram_relays (tenant_id, bot_id) {
        tenant_id -> Text,
        bot_id -> BigInt,
        bot_username -> Text,
        bot_token_enc -> Text,
        webhook_secret_enc -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    telegram_topic_bots (conversation_id) {
        conversation_id -> Text,
        tenant_id -> Text,
        bot_id -> BigInt,
        assigned_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(telegram_topic_bots, conversations);
diesel::allow_tables_to_appear_in_same_query!(telegram_topic_bots, outbox);

diesel::table! {
    telegram_updates (tenant_id, bot_id, update_id) {
        tenant_id -> Text,
        bot_id -> BigInt,
        update_id -> BigInt,
        received_at -> BigInt,
    }
}

diesel::table! {
    outbox (id) {
        id -> Text,
        tenant_id -> Text,
        kind -> Text,
        idempotency_key -> Text,
        lane -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        lease_until -> Nullable<BigInt>,
        leased_by -> Nullable<Text>,
        last_error -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        delivered_at -> Nullable<BigInt>,
        conversation_id -> Nullable<Text>,
    }
}

diesel::table! {
    outbox_batches (head_id) {
        head_id -> Text,
        tenant_id -> Text,
        items -> Text,
        created_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(outbox, outbox_batches);
diesel::allow_tables_to_appear_in_same_query!(messages, outbox_batches);
diesel::allow_tables_to_appear_in_same_query!(conversations, outbox_batches);
diesel::allow_tables_to_appear_in_same_query!(telegram_configs, outbox_batches);

diesel::table! {
    usage_daily (tenant_id, day, metric) {
        tenant_id -> Text,
        day -> Text,
        metric -> Text,
        count -> BigInt,
    }
}

diesel::joinable!(api_keys -> tenants (tenant_id));
diesel::joinable!(visitors -> tenants (tenant_id));
diesel::joinable!(conversations -> visitors (visitor_id));
diesel::joinable!(messages -> conversations (conversation_id));

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    api_keys,
    visitors,
    conversations,
    messages,
    telegram_configs,
    telegram_updates,
    outbox,
    usage_daily
);

diesel::table! {
    visitor_tokens (token_hash) {
        token_hash -> Text,
        tenant_id -> Text,
        visitor_id -> Text,
        created_at -> BigInt,
    }
}

diesel::joinable!(visitor_tokens -> visitors (visitor_id));
diesel::allow_tables_to_appear_in_same_query!(visitor_tokens, visitors);
diesel::allow_tables_to_appear_in_same_query!(visitor_tokens, conversations);

diesel::table! {
    templates (tenant_id, key, locale) {
        tenant_id -> Text,
        key -> Text,
        locale -> Text,
        body -> Text,
        updated_at -> BigInt,
    }
}

diesel::joinable!(templates -> tenants (tenant_id));
diesel::allow_tables_to_appear_in_same_query!(templates, tenants);

diesel::table! {
    plans (code) {
        code -> Text,
        name -> Text,
        active -> Bool,
        price_month_cents -> Nullable<BigInt>,
        price_year_cents -> Nullable<BigInt>,
        conversation_starts_per_day -> Nullable<Integer>,
        topic_renames_per_day -> Nullable<Integer>,
        messages_per_day -> Nullable<Integer>,
        active_conversations -> Nullable<Integer>,
        retention_days -> Nullable<Integer>,
        channel_widget -> Bool,
        channel_telegram -> Bool,
        features -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::joinable!(tenants -> plans (plan_code));
diesel::allow_tables_to_appear_in_same_query!(plans, tenants);
diesel::allow_tables_to_appear_in_same_query!(plans, visitors);
diesel::allow_tables_to_appear_in_same_query!(plans, telegram_configs);
diesel::allow_tables_to_appear_in_same_query!(plans, messages);
diesel::allow_tables_to_appear_in_same_query!(plans, conversations);
diesel::allow_tables_to_appear_in_same_query!(plans, outbox_batches);

diesel::table! {
    billing_customers (tenant_id) {
        tenant_id -> Text,
        stripe_customer_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    billing_checkouts (tenant_id, idempotency_key) {
        tenant_id -> Text,
        idempotency_key -> Text,
        request_hash -> Text,
        stripe_session_id -> Text,
        url -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    billing_subscriptions (tenant_id) {
        tenant_id -> Text,
        stripe_customer_id -> Nullable<Text>,
        stripe_subscription_id -> Nullable<Text>,
        plan_code -> Nullable<Text>,
        interval -> Nullable<Text>,
        status -> Text,
        current_period_end -> Nullable<BigInt>,
        cancel_at_period_end -> Bool,
        dunning -> Text,
        grace_until -> Nullable<BigInt>,
        last_event_created -> Nullable<BigInt>,
        last_payment_created -> Nullable<BigInt>,
        last_payment_failed -> Bool,
        updated_at -> BigInt,
    }
}

diesel::table! {
    billing_events (event_id) {
        event_id -> Text,
        #[sql_name = "type"]
        event_type -> Text,
        tenant_id -> Nullable<Text>,
        received_at -> BigInt,
        outcome -> Text,
    }
}

diesel::joinable!(billing_customers -> tenants (tenant_id));
diesel::joinable!(billing_checkouts -> tenants (tenant_id));
diesel::joinable!(billing_subscriptions -> tenants (tenant_id));
diesel::allow_tables_to_appear_in_same_query!(
    billing_customers,
    billing_checkouts,
    billing_subscriptions,
    tenants
);

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> BigInt,
        tenant_id -> Nullable<Text>,
        actor -> Text,
        actor_name -> Nullable<Text>,
        action -> Text,
        target -> Nullable<Text>,
        request_id -> Nullable<Text>,
        changes -> Text,
    }
}

diesel::table! {
    audit_purge_gate (one) {
        one -> Integer,
    }
}

diesel::table! {
    tenant_environments (tenant_id, environment) {
        tenant_id -> Text,
        environment -> Text,
        widget_key -> Text,
        settings -> Text,
        telegram_group_chat_id -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::joinable!(tenant_environments -> tenants (tenant_id));
diesel::allow_tables_to_appear_in_same_query!(tenant_environments, tenants);

diesel::table! {
    outbox_backlog (lane) {
        lane -> Text,
        tenant_id -> Text,
        warned_at -> Nullable<BigInt>,
        cleared_at -> Nullable<BigInt>,
        episodes -> Integer,
        updated_at -> BigInt,
    }
}
