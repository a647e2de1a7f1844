# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_chatorical_global_optspecs
    string join \n config= database-url= data-dir= log-format= json h/help V/version
end

function __fish_chatorical_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_chatorical_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_chatorical_using_subcommand
    set -l cmd (__fish_chatorical_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c chatorical -n "__fish_chatorical_needs_command" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_needs_command" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_needs_command" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_needs_command" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_needs_command" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_needs_command" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "serve" -d 'Run the HTTP API, the widget socket, the widget script and the demo page'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "worker" -d 'Deliver outbox items to Telegram (run any number beside `serve`)'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "migrate" -d 'Apply pending database migrations'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "tenants" -d 'Create, list and show tenants; put a tenant on a plan'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "plans" -d 'Plans as code: sync the catalogue file, list, show and delete plans'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "billing" -d 'Billing: where a tenant stands with its Stripe subscription'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "keys" -d 'Issue, list and revoke API keys'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "telegram" -d 'Connect a tenant\'s Telegram bot and forum group'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "outbox" -d 'Inspect and retry outbox items'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "usage" -d 'Per-tenant daily usage: summarize the counters, show a tenant\'s days'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "flags" -d 'A tenant\'s feature flags per environment (over the plan\'s features): list, set, unset'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "templates" -d 'A tenant\'s texts for the widget\'s strings, per locale: list, set, delete, preview'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "secrets" -d 'Master key rotation: which key seals what, rotate, retire old keys'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "audit" -d 'The audit log: list entries, export them to a file'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "visitors" -d 'Visitors\' personal data (GDPR): export everything about a visitor, erase it'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "retention" -d 'Retention: delete closed conversations past their tenant\'s retention, and unused visitors'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "backup" -d 'Copy the embedded SQLite database to a file while `serve` keeps running, and check the copy'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "restore" -d 'Replace the embedded SQLite database with a backup (refused while `serve` or a `worker` runs)'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "completions" -d 'Print shell completions (bash, zsh, fish) on stdout'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "config" -d 'Check or print configuration'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "doctor" -d 'Check what an operator checks first: configuration, database and migrations, Redis, the master key and the secrets it opens, the public URL, Telegram webhooks'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "widget" -d 'Release the widget script: versioned asset and an embed snippet with SRI'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "man" -d 'Write man pages for every command (used to keep man/ current)'
complete -c chatorical -n "__fish_chatorical_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand serve" -l listen -d 'Address to listen on (default 127.0.0.1:8080)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand serve" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand serve" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand serve" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand serve" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand serve" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand serve" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand worker" -l workers -d 'Workers to run in this process' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand worker" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand worker" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand worker" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand worker" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand worker" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand worker" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand worker" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand migrate" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand migrate" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand migrate" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand migrate" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand migrate" -l dry-run -d 'List pending migrations without applying them'
complete -c chatorical -n "__fish_chatorical_using_subcommand migrate" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand migrate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand migrate" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and not __fish_seen_subcommand_from create list show set-plan validate identity-secret env help" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and not __fish_seen_subcommand_from create list show set-plan validate identity-secret env help" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and not __fish_seen_subcommand_from create list show set-plan validate identity-secret env help" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and not __fish_seen_subcommand_from create list show set-plan validate identity-secret env help" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and not __fish_seen_subcommand_from create list show set-plan validate identity-secret env help" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and not __fish_seen_subcommand_from create list show set-plan validate identity-secret env help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and not __fish_seen_subcommand_from create list show set-plan validate identity-secret env help" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and not __fish_seen_subcommand_from create list show set-plan validate identity-secret env help" -f -a "create" -d 'Create a tenant (prints its widget key)'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and not __fish_seen_subcommand_from create list show set-plan validate identity-secret env help" -f -a "list" -d 'List tenants'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and not __fish_seen_subcommand_from create list show set-plan validate identity-secret env help" -f -a "show" -d 'Show one tenant'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and not __fish_seen_subcommand_from create list show set-plan validate identity-secret env help" -f -a "set-plan" -d 'Put a tenant on another plan (it must be active); takes effect at once'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and not __fish_seen_subcommand_from create list show set-plan validate identity-secret env help" -f -a "validate" -d 'Check a tenant end to end: bot, forum group, webhook, widget isolation, a test message through the outbox (needs a running server or worker). Exit 1 on any failure'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and not __fish_seen_subcommand_from create list show set-plan validate identity-secret env help" -f -a "identity-secret" -d 'Generate a new identity verification secret (printed once; replaces the previous one, whose user hashes stop verifying). The host site\'s server computes user_hash = hex(HMAC-SHA256(secret, user id))'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and not __fish_seen_subcommand_from create list show set-plan validate identity-secret env help" -f -a "env" -d 'A tenant\'s environments (production, staging): widget keys, origins, Telegram group'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and not __fish_seen_subcommand_from create list show set-plan validate identity-secret env help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from create" -l slug -d 'URL-safe unique name: 2-40 of a-z, 0-9, \'-\'' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from create" -l name -d 'Display name' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from create" -l origin -d 'Origin allowed to embed the widget, e.g. https://shop.example (repeatable)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from create" -l plan -d 'The tenant\'s plan (an active plan\'s code); default `free`' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from create" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from create" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from create" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from create" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from create" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from list" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from list" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from list" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from list" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from show" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from show" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from show" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from show" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from show" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from set-plan" -l tenant -d 'The tenant\'s slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from set-plan" -l plan -d 'The plan\'s code' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from set-plan" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from set-plan" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from set-plan" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from set-plan" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from set-plan" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from set-plan" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from set-plan" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from validate" -l tenant -d 'The tenant\'s slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from validate" -l wait -d 'Seconds to wait for the test message to be delivered' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from validate" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from validate" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from validate" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from validate" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from validate" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from validate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from validate" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from identity-secret" -l tenant -d 'The tenant\'s slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from identity-secret" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from identity-secret" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from identity-secret" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from identity-secret" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from identity-secret" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from identity-secret" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from identity-secret" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from env" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from env" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from env" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from env" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from env" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from env" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from env" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from env" -f -a "list" -d 'List a tenant\'s environments: production, and staging once created'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from env" -f -a "show" -d 'Show one environment of a tenant'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from env" -f -a "put" -d 'Create (staging, on first use) or change an environment: rotate its widget key, replace its allowed origins, give staging a Telegram forum group of its own'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from env" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a tenant (prints its widget key)'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from help" -f -a "list" -d 'List tenants'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one tenant'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from help" -f -a "set-plan" -d 'Put a tenant on another plan (it must be active); takes effect at once'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from help" -f -a "validate" -d 'Check a tenant end to end: bot, forum group, webhook, widget isolation, a test message through the outbox (needs a running server or worker). Exit 1 on any failure'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from help" -f -a "identity-secret" -d 'Generate a new identity verification secret (printed once; replaces the previous one, whose user hashes stop verifying). The host site\'s server computes user_hash = hex(HMAC-SHA256(secret, user id))'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from help" -f -a "env" -d 'A tenant\'s environments (production, staging): widget keys, origins, Telegram group'
complete -c chatorical -n "__fish_chatorical_using_subcommand tenants; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and not __fish_seen_subcommand_from sync list show delete help" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and not __fish_seen_subcommand_from sync list show delete help" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and not __fish_seen_subcommand_from sync list show delete help" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and not __fish_seen_subcommand_from sync list show delete help" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and not __fish_seen_subcommand_from sync list show delete help" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and not __fish_seen_subcommand_from sync list show delete help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and not __fish_seen_subcommand_from sync list show delete help" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and not __fish_seen_subcommand_from sync list show delete help" -f -a "sync" -d 'Make the database match a catalogue file (TOML, see config/plans.example.toml): create and update plans, and with --prune deactivate the ones the file lacks. All or nothing: an invalid file changes nothing. Plans are never deleted'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and not __fish_seen_subcommand_from sync list show delete help" -f -a "list" -d 'List plans'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and not __fish_seen_subcommand_from sync list show delete help" -f -a "show" -d 'Show one plan'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and not __fish_seen_subcommand_from sync list show delete help" -f -a "delete" -d 'Delete a plan. A plan still used by tenants is refused unless --reassign moves them to another plan (in the same transaction). `free` is never deleted'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and not __fish_seen_subcommand_from sync list show delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from sync" -l file -d 'The catalogue file' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from sync" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from sync" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from sync" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from sync" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from sync" -l dry-run -d 'Show what would change (and the Stripe calls that would be made); write nothing'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from sync" -l prune -d 'Deactivate plans that are not in the file (their tenants keep them)'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from sync" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from sync" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from sync" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from list" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from list" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from list" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from list" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from show" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from show" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from show" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from show" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from show" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from delete" -l reassign -d 'Move the plan\'s tenants to this active plan first' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from delete" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from delete" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from delete" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from delete" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from delete" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from help" -f -a "sync" -d 'Make the database match a catalogue file (TOML, see config/plans.example.toml): create and update plans, and with --prune deactivate the ones the file lacks. All or nothing: an invalid file changes nothing. Plans are never deleted'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from help" -f -a "list" -d 'List plans'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one plan'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a plan. A plan still used by tenants is refused unless --reassign moves them to another plan (in the same transaction). `free` is never deleted'
complete -c chatorical -n "__fish_chatorical_using_subcommand plans; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and not __fish_seen_subcommand_from status help" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and not __fish_seen_subcommand_from status help" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and not __fish_seen_subcommand_from status help" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and not __fish_seen_subcommand_from status help" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and not __fish_seen_subcommand_from status help" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and not __fish_seen_subcommand_from status help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and not __fish_seen_subcommand_from status help" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and not __fish_seen_subcommand_from status help" -f -a "status" -d 'Where a tenant stands with billing: its plan, its Stripe subscription (status, interval, end of the paid period, cancelled at period end) and, after a failed payment, the grace period\'s end or the downgrade to free'
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and not __fish_seen_subcommand_from status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and __fish_seen_subcommand_from status" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and __fish_seen_subcommand_from status" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and __fish_seen_subcommand_from status" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and __fish_seen_subcommand_from status" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and __fish_seen_subcommand_from status" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and __fish_seen_subcommand_from status" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and __fish_seen_subcommand_from help" -f -a "status" -d 'Where a tenant stands with billing: its plan, its Stripe subscription (status, interval, end of the paid period, cancelled at period end) and, after a failed payment, the grace period\'s end or the downgrade to free'
complete -c chatorical -n "__fish_chatorical_using_subcommand billing; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and not __fish_seen_subcommand_from issue list revoke help" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and not __fish_seen_subcommand_from issue list revoke help" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and not __fish_seen_subcommand_from issue list revoke help" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and not __fish_seen_subcommand_from issue list revoke help" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and not __fish_seen_subcommand_from issue list revoke help" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and not __fish_seen_subcommand_from issue list revoke help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and not __fish_seen_subcommand_from issue list revoke help" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and not __fish_seen_subcommand_from issue list revoke help" -f -a "issue" -d 'Issue a key. The key is printed once and cannot be shown again'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and not __fish_seen_subcommand_from issue list revoke help" -f -a "list" -d 'List keys (never the keys themselves)'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and not __fish_seen_subcommand_from issue list revoke help" -f -a "revoke" -d 'Revoke a key by id, and (by default) every key it issued'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and not __fish_seen_subcommand_from issue list revoke help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from issue" -l tenant -d 'The tenant (slug) the key acts for' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from issue" -l scope -d 'Scope such as conversations:read or keys:write (repeatable)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from issue" -l name -d 'Label' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from issue" -l expires-in -d 'Lifetime such as 30d or 12h' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from issue" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from issue" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from issue" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from issue" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from issue" -l platform -d 'A platform key (manages tenants; acts for any tenant via the Chatorical-Tenant header)'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from issue" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from issue" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from issue" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from list" -l tenant -d 'Only this tenant\'s keys' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from list" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from list" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from list" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from list" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l cascade -d 'Also revoke the keys this key issued, and the keys those issued (default true; `--cascade=false` revokes this key alone)' -r -f -a "true\t''
false\t''"
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from revoke" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from revoke" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "issue" -d 'Issue a key. The key is printed once and cannot be shown again'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "list" -d 'List keys (never the keys themselves)'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke a key by id, and (by default) every key it issued'
complete -c chatorical -n "__fish_chatorical_using_subcommand keys; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -f -a "setup" -d 'Connect a tenant\'s bot and forum group (validates with Telegram; registers the webhook, or in polling mode deletes it and a worker long-polls getUpdates)'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -f -a "mode" -d 'Switch how a tenant\'s updates arrive: `webhook` (setWebhook) or `polling` (deleteWebhook; a worker long-polls getUpdates)'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -f -a "status" -d 'Show a tenant\'s Telegram connection (token redacted)'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -f -a "set" -d 'Change a tenant\'s Telegram options'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -f -a "disable" -d 'Pause delivery and ignore webhook updates (items wait in the outbox)'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -f -a "enable" -d 'Resume after `disable`'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -f -a "disconnect" -d 'Disconnect (deleteWebhook and forget the bot)'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -f -a "add-relay" -d 'Add a relay bot to the tenant\'s forum group (another bot, admin of the group with Manage Topics): each bot has its own budget of messages a minute, and new conversations\' topics are spread over the bots'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -f -a "remove-relay" -d 'Remove a relay bot: its topics and pending messages go to the remaining bots'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -f -a "relays" -d 'List a tenant\'s relay bots with the open topics each serves'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and not __fish_seen_subcommand_from setup mode status set disable enable disconnect add-relay remove-relay relays help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from setup" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from setup" -l bot-token-file -d 'File holding the bot token (`-` reads standard input); never pass it as an argument' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from setup" -l group -d 'The forum supergroup\'s chat id (e.g. -1001234567890)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from setup" -l default-topic -d 'Topic to use when the bot may not create topics' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from setup" -l mode -d 'How updates arrive: `webhook` (Telegram calls server.public_url) or `polling` (a worker long-polls; no public URL needed). Default: the tenant\'s current mode, else telegram.default_mode (webhook when server.public_url is set, else polling)' -r -f -a "webhook\t'Telegram calls `{server.public_url}/v1/telegram/webhook/{slug}` (needs a URL Telegram can reach)'
polling\t'A worker long-polls getUpdates (no public URL needed: laptops, servers behind NAT)'"
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from setup" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from setup" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from setup" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from setup" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from setup" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from setup" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from setup" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from mode" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from mode" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from mode" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from mode" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from mode" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from mode" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from mode" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from mode" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from status" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from status" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from status" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from status" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from status" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from status" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from set" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from set" -l delete-topics-on-retention -d 'Whether retention also deletes a purged conversation\'s forum topic with its messages (the bot needs the "Delete messages" admin right)' -r -f -a "true\t''
false\t''"
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from set" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from set" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from set" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from set" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from set" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from set" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disable" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disable" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disable" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disable" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disable" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disable" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disable" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disable" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from enable" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from enable" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from enable" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from enable" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from enable" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from enable" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from enable" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from enable" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disconnect" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disconnect" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disconnect" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disconnect" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disconnect" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disconnect" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disconnect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from disconnect" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from add-relay" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from add-relay" -l bot-token-file -d 'File holding the relay bot\'s token (`-` reads standard input); never pass it as an argument' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from add-relay" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from add-relay" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from add-relay" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from add-relay" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from add-relay" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from add-relay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from add-relay" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from remove-relay" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from remove-relay" -l bot-id -d 'The relay bot\'s user id (see `telegram relays`)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from remove-relay" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from remove-relay" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from remove-relay" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from remove-relay" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from remove-relay" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from remove-relay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from remove-relay" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from relays" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from relays" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from relays" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from relays" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from relays" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from relays" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from relays" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from relays" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from help" -f -a "setup" -d 'Connect a tenant\'s bot and forum group (validates with Telegram; registers the webhook, or in polling mode deletes it and a worker long-polls getUpdates)'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from help" -f -a "mode" -d 'Switch how a tenant\'s updates arrive: `webhook` (setWebhook) or `polling` (deleteWebhook; a worker long-polls getUpdates)'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show a tenant\'s Telegram connection (token redacted)'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from help" -f -a "set" -d 'Change a tenant\'s Telegram options'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from help" -f -a "disable" -d 'Pause delivery and ignore webhook updates (items wait in the outbox)'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from help" -f -a "enable" -d 'Resume after `disable`'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from help" -f -a "disconnect" -d 'Disconnect (deleteWebhook and forget the bot)'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from help" -f -a "add-relay" -d 'Add a relay bot to the tenant\'s forum group (another bot, admin of the group with Manage Topics): each bot has its own budget of messages a minute, and new conversations\' topics are spread over the bots'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from help" -f -a "remove-relay" -d 'Remove a relay bot: its topics and pending messages go to the remaining bots'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from help" -f -a "relays" -d 'List a tenant\'s relay bots with the open topics each serves'
complete -c chatorical -n "__fish_chatorical_using_subcommand telegram; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and not __fish_seen_subcommand_from list retry status help" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and not __fish_seen_subcommand_from list retry status help" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and not __fish_seen_subcommand_from list retry status help" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and not __fish_seen_subcommand_from list retry status help" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and not __fish_seen_subcommand_from list retry status help" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and not __fish_seen_subcommand_from list retry status help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and not __fish_seen_subcommand_from list retry status help" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and not __fish_seen_subcommand_from list retry status help" -f -a "list" -d 'List a tenant\'s outbox items, newest first (payload texts redacted)'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and not __fish_seen_subcommand_from list retry status help" -f -a "retry" -d 'Put a dead item back in the queue'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and not __fish_seen_subcommand_from list retry status help" -f -a "status" -d 'The backlog per tenant and lane (Telegram group): items waiting, how long the oldest has waited, and the estimated drain time at the lane\'s budget (items ÷ calls a minute its budgets allow; a lower bound)'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and not __fish_seen_subcommand_from list retry status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from list" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from list" -l status -d 'queued, in_flight, delivered, dead or cancelled' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from list" -l limit -d 'At most this many' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from list" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from list" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from list" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from list" -l reveal -d 'Show payload texts'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from list" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from retry" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from retry" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from retry" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from retry" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from retry" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from retry" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from retry" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from retry" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from status" -l tenant -d 'Only this tenant (slug); every tenant when absent' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from status" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from status" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from status" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from status" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from status" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from help" -f -a "list" -d 'List a tenant\'s outbox items, newest first (payload texts redacted)'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from help" -f -a "retry" -d 'Put a dead item back in the queue'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from help" -f -a "status" -d 'The backlog per tenant and lane (Telegram group): items waiting, how long the oldest has waited, and the estimated drain time at the lane\'s budget (items ÷ calls a minute its budgets allow; a lower bound)'
complete -c chatorical -n "__fish_chatorical_using_subcommand outbox; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and not __fish_seen_subcommand_from summarize show help" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and not __fish_seen_subcommand_from summarize show help" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and not __fish_seen_subcommand_from summarize show help" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and not __fish_seen_subcommand_from summarize show help" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and not __fish_seen_subcommand_from summarize show help" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and not __fish_seen_subcommand_from summarize show help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and not __fish_seen_subcommand_from summarize show help" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and not __fish_seen_subcommand_from summarize show help" -f -a "summarize" -d 'Fold the Redis counters into the database now (`serve` and `worker` do it every minute; without Redis the counts are in the database already)'
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and not __fish_seen_subcommand_from summarize show help" -f -a "show" -d 'A tenant\'s usage per UTC day: conversations started, messages in and out, Telegram topics created; staging\'s apart, below'
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and not __fish_seen_subcommand_from summarize show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from summarize" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from summarize" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from summarize" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from summarize" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from summarize" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from summarize" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from summarize" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from show" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from show" -l days -d 'The last this many days, today included (1-366)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from show" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from show" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from show" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from show" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from show" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from help" -f -a "summarize" -d 'Fold the Redis counters into the database now (`serve` and `worker` do it every minute; without Redis the counts are in the database already)'
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from help" -f -a "show" -d 'A tenant\'s usage per UTC day: conversations started, messages in and out, Telegram topics created; staging\'s apart, below'
complete -c chatorical -n "__fish_chatorical_using_subcommand usage; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and not __fish_seen_subcommand_from list set unset help" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and not __fish_seen_subcommand_from list set unset help" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and not __fish_seen_subcommand_from list set unset help" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and not __fish_seen_subcommand_from list set unset help" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and not __fish_seen_subcommand_from list set unset help" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and not __fish_seen_subcommand_from list set unset help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and not __fish_seen_subcommand_from list set unset help" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and not __fish_seen_subcommand_from list set unset help" -f -a "list" -d 'List an environment\'s flags, the plan\'s features and the effective set the widget session carries'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and not __fish_seen_subcommand_from list set unset help" -f -a "set" -d 'Set a flag in an environment (overrides the plan\'s feature of that name)'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and not __fish_seen_subcommand_from list set unset help" -f -a "unset" -d 'Unset a flag in an environment (the plan\'s feature of that name applies again)'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and not __fish_seen_subcommand_from list set unset help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from list" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from list" -l env -d 'production or staging' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from list" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from list" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from list" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from list" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from set" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from set" -l env -d 'production or staging' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from set" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from set" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from set" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from set" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from set" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from set" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from unset" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from unset" -l env -d 'production or staging' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from unset" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from unset" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from unset" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from unset" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from unset" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from unset" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from unset" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from help" -f -a "list" -d 'List an environment\'s flags, the plan\'s features and the effective set the widget session carries'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from help" -f -a "set" -d 'Set a flag in an environment (overrides the plan\'s feature of that name)'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from help" -f -a "unset" -d 'Unset a flag in an environment (the plan\'s feature of that name applies again)'
complete -c chatorical -n "__fish_chatorical_using_subcommand flags; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and not __fish_seen_subcommand_from list set delete preview help" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and not __fish_seen_subcommand_from list set delete preview help" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and not __fish_seen_subcommand_from list set delete preview help" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and not __fish_seen_subcommand_from list set delete preview help" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and not __fish_seen_subcommand_from list set delete preview help" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and not __fish_seen_subcommand_from list set delete preview help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and not __fish_seen_subcommand_from list set delete preview help" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and not __fish_seen_subcommand_from list set delete preview help" -f -a "list" -d 'List a tenant\'s templates'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and not __fish_seen_subcommand_from list set delete preview help" -f -a "set" -d 'Store (create or replace) a tenant\'s text for a key in a locale. A syntax error or a variable the key does not allow fails, naming the character position'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and not __fish_seen_subcommand_from list set delete preview help" -f -a "delete" -d 'Delete a tenant\'s text for a key in a locale (the widget falls back again)'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and not __fish_seen_subcommand_from list set delete preview help" -f -a "preview" -d 'Render a key for a locale as the widget would show it (after fallback), or a given body. Variables the text uses but were not given render as empty'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and not __fish_seen_subcommand_from list set delete preview help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from list" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from list" -l key -d 'Only this key, e.g. widget.title' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from list" -l locale -d 'Only this exact locale, e.g. de-AT' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from list" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from list" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from list" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from list" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from set" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from set" -l key -d 'String key, e.g. widget.title' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from set" -l locale -d 'Locale: ll or ll-RR, e.g. de or de-AT' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from set" -l body -d 'The template text' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from set" -l body-file -d 'Read the template text from a file (`-` for standard input)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from set" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from set" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from set" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from set" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from set" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from set" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from delete" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from delete" -l key -d 'String key' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from delete" -l locale -d 'Locale' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from delete" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from delete" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from delete" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from delete" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from delete" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from preview" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from preview" -l key -d 'String key' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from preview" -l locale -d 'Locale, e.g. de-AT' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from preview" -l var -d 'A variable\'s value (repeatable), e.g. --var retry_after=5' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from preview" -l body -d 'Try this template instead of the stored or built-in text' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from preview" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from preview" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from preview" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from preview" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from preview" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from preview" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from preview" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from help" -f -a "list" -d 'List a tenant\'s templates'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from help" -f -a "set" -d 'Store (create or replace) a tenant\'s text for a key in a locale. A syntax error or a variable the key does not allow fails, naming the character position'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a tenant\'s text for a key in a locale (the widget falls back again)'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from help" -f -a "preview" -d 'Render a key for a locale as the widget would show it (after fallback), or a given body. Variables the text uses but were not given render as empty'
complete -c chatorical -n "__fish_chatorical_using_subcommand templates; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and not __fish_seen_subcommand_from status rotate retire-old help" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and not __fish_seen_subcommand_from status rotate retire-old help" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and not __fish_seen_subcommand_from status rotate retire-old help" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and not __fish_seen_subcommand_from status rotate retire-old help" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and not __fish_seen_subcommand_from status rotate retire-old help" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and not __fish_seen_subcommand_from status rotate retire-old help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and not __fish_seen_subcommand_from status rotate retire-old help" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and not __fish_seen_subcommand_from status rotate retire-old help" -f -a "status" -d 'How many tenant secrets are sealed under which key of the master key file (keys are shown by their public key, `age1…`)'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and not __fish_seen_subcommand_from status rotate retire-old help" -f -a "rotate" -d 'Put a new key first in the master key file (the old one stays, so running servers keep decrypting), then re-encrypt every tenant secret under it. Re-running after an interruption finishes the same rotation; values already under the new key are skipped. Then run `secrets retire-old`'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and not __fish_seen_subcommand_from status rotate retire-old help" -f -a "retire-old" -d 'Remove every key but the newest from the master key file. Refused while any secret is not sealed under the newest key'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and not __fish_seen_subcommand_from status rotate retire-old help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from status" -l batch-size -d 'Rows per batch (and per transaction when re-encrypting)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from status" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from status" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from status" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from status" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from status" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from rotate" -l batch-size -d 'Rows per batch (and per transaction when re-encrypting)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from rotate" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from rotate" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from rotate" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from rotate" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from rotate" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from rotate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from rotate" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from retire-old" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from retire-old" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from retire-old" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from retire-old" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from retire-old" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from retire-old" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from retire-old" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from help" -f -a "status" -d 'How many tenant secrets are sealed under which key of the master key file (keys are shown by their public key, `age1…`)'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from help" -f -a "rotate" -d 'Put a new key first in the master key file (the old one stays, so running servers keep decrypting), then re-encrypt every tenant secret under it. Re-running after an interruption finishes the same rotation; values already under the new key are skipped. Then run `secrets retire-old`'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from help" -f -a "retire-old" -d 'Remove every key but the newest from the master key file. Refused while any secret is not sealed under the newest key'
complete -c chatorical -n "__fish_chatorical_using_subcommand secrets; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and not __fish_seen_subcommand_from list export help" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and not __fish_seen_subcommand_from list export help" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and not __fish_seen_subcommand_from list export help" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and not __fish_seen_subcommand_from list export help" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and not __fish_seen_subcommand_from list export help" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and not __fish_seen_subcommand_from list export help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and not __fish_seen_subcommand_from list export help" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and not __fish_seen_subcommand_from list export help" -f -a "list" -d 'Entries of the audit log, oldest first (one page; `--cursor` for the next)'
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and not __fish_seen_subcommand_from list export help" -f -a "export" -d 'Write entries to a file (JSON lines or CSV), streamed in constant memory; the file appears only when complete'
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and not __fish_seen_subcommand_from list export help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from list" -l tenant -d 'Only this tenant\'s entries (slug); else every entry' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from list" -l since -d 'At or after (YYYY-MM-DD or RFC 3339)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from list" -l until -d 'Before (YYYY-MM-DD or RFC 3339)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from list" -l action -d 'Only this action (key.issued, settings.updated, visitor.erased...)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from list" -l actor -d 'Only this actor (key:<id>, cli:<user>@<host>, telegram:<id>, stripe, system)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from list" -l cursor -d 'The next_cursor of the previous page' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from list" -l limit -d 'Page size (1-500)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from list" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from list" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from list" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from list" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from list" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from export" -l tenant -d 'One tenant\'s entries (slug)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from export" -l since -d 'At or after (YYYY-MM-DD or RFC 3339)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from export" -l until -d 'Before (YYYY-MM-DD or RFC 3339)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from export" -l format -d 'File format' -r -f -a "jsonl\t'One JSON object per line'
csv\t'CSV with a header row'"
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from export" -l out -d 'The file to write (replaced only when the export is complete)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from export" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from export" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from export" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from export" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from export" -l platform -d 'Every entry: the platform\'s and all tenants\''
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from export" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from export" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "list" -d 'Entries of the audit log, oldest first (one page; `--cursor` for the next)'
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "export" -d 'Write entries to a file (JSON lines or CSV), streamed in constant memory; the file appears only when complete'
complete -c chatorical -n "__fish_chatorical_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and not __fish_seen_subcommand_from export erase help" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and not __fish_seen_subcommand_from export erase help" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and not __fish_seen_subcommand_from export erase help" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and not __fish_seen_subcommand_from export erase help" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and not __fish_seen_subcommand_from export erase help" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and not __fish_seen_subcommand_from export erase help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and not __fish_seen_subcommand_from export erase help" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and not __fish_seen_subcommand_from export erase help" -f -a "export" -d 'Everything stored about a visitor, as JSON: profile, identity, device tokens (counts and times only), conversations and every message. Recorded in the audit log as visitor.exported'
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and not __fish_seen_subcommand_from export erase help" -f -a "erase" -d 'Erase a visitor: message texts (both directions), profile, identity and tokens; their conversations keep their shape. Open sockets are closed on every node reached through Redis (with redis.url set). Erasing again changes nothing'
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and not __fish_seen_subcommand_from export erase help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from export" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from export" -l visitor -d 'Visitor id (vis_...)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from export" -l out -d 'Write the JSON to this file (created 0600; replaced only when complete) instead of standard output' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from export" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from export" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from export" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from export" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from export" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from export" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from erase" -l tenant -d 'Tenant slug' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from erase" -l visitor -d 'Visitor id (vis_...)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from erase" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from erase" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from erase" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from erase" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from erase" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from erase" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from erase" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from help" -f -a "export" -d 'Everything stored about a visitor, as JSON: profile, identity, device tokens (counts and times only), conversations and every message. Recorded in the audit log as visitor.exported'
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from help" -f -a "erase" -d 'Erase a visitor: message texts (both directions), profile, identity and tokens; their conversations keep their shape. Open sockets are closed on every node reached through Redis (with redis.url set). Erasing again changes nothing'
complete -c chatorical -n "__fish_chatorical_using_subcommand visitors; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and not __fish_seen_subcommand_from run help" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and not __fish_seen_subcommand_from run help" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and not __fish_seen_subcommand_from run help" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and not __fish_seen_subcommand_from run help" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and not __fish_seen_subcommand_from run help" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and not __fish_seen_subcommand_from run help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and not __fish_seen_subcommand_from run help" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and not __fish_seen_subcommand_from run help" -f -a "run" -d 'Delete closed conversations older than their tenant\'s retention (plan, shortened by the tenant\'s setting) with their messages and outbox items, and visitors nothing refers to any more; in batches, each its own transaction (the worker does this every hour). Interrupted, it simply continues on the next run'
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and not __fish_seen_subcommand_from run help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and __fish_seen_subcommand_from run" -l tenant -d 'Only this tenant (slug); else every tenant' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and __fish_seen_subcommand_from run" -l batch-size -d 'Conversations (or visitors) per transaction, 1-10000 (default: retention.batch_size)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and __fish_seen_subcommand_from run" -l batch-messages -d 'Messages per transaction, 1-10000 (default: retention.batch_messages)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and __fish_seen_subcommand_from run" -l pause-ms -d 'Milliseconds between two transactions (default: retention.pause_ms)' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and __fish_seen_subcommand_from run" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and __fish_seen_subcommand_from run" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and __fish_seen_subcommand_from run" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and __fish_seen_subcommand_from run" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and __fish_seen_subcommand_from run" -l dry-run -d 'Count what would be deleted; delete nothing'
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and __fish_seen_subcommand_from run" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and __fish_seen_subcommand_from run" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and __fish_seen_subcommand_from help" -f -a "run" -d 'Delete closed conversations older than their tenant\'s retention (plan, shortened by the tenant\'s setting) with their messages and outbox items, and visitors nothing refers to any more; in batches, each its own transaction (the worker does this every hour). Interrupted, it simply continues on the next run'
complete -c chatorical -n "__fish_chatorical_using_subcommand retention; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand backup" -l out -d 'File to write the copy to (must not exist yet). Safe while `serve` runs' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand backup" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand backup" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand backup" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand backup" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand backup" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand backup" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand backup" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand restore" -l from -d 'Backup file to restore (made by `chatorical backup`). Stop `serve` and every `worker` first; the database it replaces is kept beside it' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand restore" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand restore" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand restore" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand restore" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand restore" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand restore" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand restore" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand completions" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand completions" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand completions" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand completions" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand completions" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand completions" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and not __fish_seen_subcommand_from check example help" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and not __fish_seen_subcommand_from check example help" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and not __fish_seen_subcommand_from check example help" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and not __fish_seen_subcommand_from check example help" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and not __fish_seen_subcommand_from check example help" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and not __fish_seen_subcommand_from check example help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and not __fish_seen_subcommand_from check example help" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and not __fish_seen_subcommand_from check example help" -f -a "check" -d 'Print the effective configuration (secrets as ***); exit 1 when it is invalid'
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and not __fish_seen_subcommand_from check example help" -f -a "example" -d 'Print the documented example configuration with every default'
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and not __fish_seen_subcommand_from check example help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from check" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from check" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from check" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from check" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from check" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from example" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from example" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from example" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from example" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from example" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from example" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from example" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Print the effective configuration (secrets as ***); exit 1 when it is invalid'
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "example" -d 'Print the documented example configuration with every default'
complete -c chatorical -n "__fish_chatorical_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand doctor" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand doctor" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand doctor" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand doctor" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand doctor" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand doctor" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and not __fish_seen_subcommand_from release help" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and not __fish_seen_subcommand_from release help" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and not __fish_seen_subcommand_from release help" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and not __fish_seen_subcommand_from release help" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and not __fish_seen_subcommand_from release help" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and not __fish_seen_subcommand_from release help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and not __fish_seen_subcommand_from release help" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and not __fish_seen_subcommand_from release help" -f -a "release" -d 'Write the versioned widget script and an embed snippet with Subresource Integrity, and print the snippet. The same binary always gives the same output'
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and not __fish_seen_subcommand_from release help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and __fish_seen_subcommand_from release" -l origin -d 'Public base URL of the chatorical server, e.g. https://chat.example.com' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and __fish_seen_subcommand_from release" -l out -d 'Directory for widget.<version>.js, snippet.html and release.json' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and __fish_seen_subcommand_from release" -l tenant -d 'Put this tenant\'s widget key into the snippet (reads the database); without it the snippet holds YOUR_WIDGET_KEY' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and __fish_seen_subcommand_from release" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and __fish_seen_subcommand_from release" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and __fish_seen_subcommand_from release" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and __fish_seen_subcommand_from release" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and __fish_seen_subcommand_from release" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and __fish_seen_subcommand_from release" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and __fish_seen_subcommand_from release" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and __fish_seen_subcommand_from help" -f -a "release" -d 'Write the versioned widget script and an embed snippet with Subresource Integrity, and print the snippet. The same binary always gives the same output'
complete -c chatorical -n "__fish_chatorical_using_subcommand widget; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand man" -l out-dir -d 'Directory to write the pages into' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand man" -l config -d 'Configuration file (else $CHATORICAL_CONFIG, ./chatorical.toml, /etc/chatorical/chatorical.toml)' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand man" -l database-url -d 'Database URL (sqlite://PATH or postgres://…); overrides the file and environment' -r
complete -c chatorical -n "__fish_chatorical_using_subcommand man" -l data-dir -d 'Data directory for the embedded database and generated keys' -r -F
complete -c chatorical -n "__fish_chatorical_using_subcommand man" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable, coloured on a terminal'
json\t'One JSON object per line'"
complete -c chatorical -n "__fish_chatorical_using_subcommand man" -l json -d 'Machine-readable JSON on stdout instead of tables'
complete -c chatorical -n "__fish_chatorical_using_subcommand man" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c chatorical -n "__fish_chatorical_using_subcommand man" -s V -l version -d 'Print version'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "serve" -d 'Run the HTTP API, the widget socket, the widget script and the demo page'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "worker" -d 'Deliver outbox items to Telegram (run any number beside `serve`)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "migrate" -d 'Apply pending database migrations'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "tenants" -d 'Create, list and show tenants; put a tenant on a plan'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "plans" -d 'Plans as code: sync the catalogue file, list, show and delete plans'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "billing" -d 'Billing: where a tenant stands with its Stripe subscription'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "keys" -d 'Issue, list and revoke API keys'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "telegram" -d 'Connect a tenant\'s Telegram bot and forum group'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "outbox" -d 'Inspect and retry outbox items'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "usage" -d 'Per-tenant daily usage: summarize the counters, show a tenant\'s days'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "flags" -d 'A tenant\'s feature flags per environment (over the plan\'s features): list, set, unset'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "templates" -d 'A tenant\'s texts for the widget\'s strings, per locale: list, set, delete, preview'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "secrets" -d 'Master key rotation: which key seals what, rotate, retire old keys'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "audit" -d 'The audit log: list entries, export them to a file'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "visitors" -d 'Visitors\' personal data (GDPR): export everything about a visitor, erase it'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "retention" -d 'Retention: delete closed conversations past their tenant\'s retention, and unused visitors'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "backup" -d 'Copy the embedded SQLite database to a file while `serve` keeps running, and check the copy'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "restore" -d 'Replace the embedded SQLite database with a backup (refused while `serve` or a `worker` runs)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "completions" -d 'Print shell completions (bash, zsh, fish) on stdout'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "config" -d 'Check or print configuration'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "doctor" -d 'Check what an operator checks first: configuration, database and migrations, Redis, the master key and the secrets it opens, the public URL, Telegram webhooks'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "widget" -d 'Release the widget script: versioned asset and an embed snippet with SRI'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "man" -d 'Write man pages for every command (used to keep man/ current)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and not __fish_seen_subcommand_from serve worker migrate tenants plans billing keys telegram outbox usage flags templates secrets audit visitors retention backup restore completions config doctor widget man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from tenants" -f -a "create" -d 'Create a tenant (prints its widget key)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from tenants" -f -a "list" -d 'List tenants'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from tenants" -f -a "show" -d 'Show one tenant'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from tenants" -f -a "set-plan" -d 'Put a tenant on another plan (it must be active); takes effect at once'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from tenants" -f -a "validate" -d 'Check a tenant end to end: bot, forum group, webhook, widget isolation, a test message through the outbox (needs a running server or worker). Exit 1 on any failure'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from tenants" -f -a "identity-secret" -d 'Generate a new identity verification secret (printed once; replaces the previous one, whose user hashes stop verifying). The host site\'s server computes user_hash = hex(HMAC-SHA256(secret, user id))'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from tenants" -f -a "env" -d 'A tenant\'s environments (production, staging): widget keys, origins, Telegram group'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from plans" -f -a "sync" -d 'Make the database match a catalogue file (TOML, see config/plans.example.toml): create and update plans, and with --prune deactivate the ones the file lacks. All or nothing: an invalid file changes nothing. Plans are never deleted'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from plans" -f -a "list" -d 'List plans'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from plans" -f -a "show" -d 'Show one plan'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from plans" -f -a "delete" -d 'Delete a plan. A plan still used by tenants is refused unless --reassign moves them to another plan (in the same transaction). `free` is never deleted'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from billing" -f -a "status" -d 'Where a tenant stands with billing: its plan, its Stripe subscription (status, interval, end of the paid period, cancelled at period end) and, after a failed payment, the grace period\'s end or the downgrade to free'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "issue" -d 'Issue a key. The key is printed once and cannot be shown again'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "list" -d 'List keys (never the keys themselves)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from keys" -f -a "revoke" -d 'Revoke a key by id, and (by default) every key it issued'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from telegram" -f -a "setup" -d 'Connect a tenant\'s bot and forum group (validates with Telegram; registers the webhook, or in polling mode deletes it and a worker long-polls getUpdates)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from telegram" -f -a "mode" -d 'Switch how a tenant\'s updates arrive: `webhook` (setWebhook) or `polling` (deleteWebhook; a worker long-polls getUpdates)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from telegram" -f -a "status" -d 'Show a tenant\'s Telegram connection (token redacted)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from telegram" -f -a "set" -d 'Change a tenant\'s Telegram options'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from telegram" -f -a "disable" -d 'Pause delivery and ignore webhook updates (items wait in the outbox)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from telegram" -f -a "enable" -d 'Resume after `disable`'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from telegram" -f -a "disconnect" -d 'Disconnect (deleteWebhook and forget the bot)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from telegram" -f -a "add-relay" -d 'Add a relay bot to the tenant\'s forum group (another bot, admin of the group with Manage Topics): each bot has its own budget of messages a minute, and new conversations\' topics are spread over the bots'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from telegram" -f -a "remove-relay" -d 'Remove a relay bot: its topics and pending messages go to the remaining bots'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from telegram" -f -a "relays" -d 'List a tenant\'s relay bots with the open topics each serves'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from outbox" -f -a "list" -d 'List a tenant\'s outbox items, newest first (payload texts redacted)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from outbox" -f -a "retry" -d 'Put a dead item back in the queue'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from outbox" -f -a "status" -d 'The backlog per tenant and lane (Telegram group): items waiting, how long the oldest has waited, and the estimated drain time at the lane\'s budget (items ÷ calls a minute its budgets allow; a lower bound)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from usage" -f -a "summarize" -d 'Fold the Redis counters into the database now (`serve` and `worker` do it every minute; without Redis the counts are in the database already)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from usage" -f -a "show" -d 'A tenant\'s usage per UTC day: conversations started, messages in and out, Telegram topics created; staging\'s apart, below'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from flags" -f -a "list" -d 'List an environment\'s flags, the plan\'s features and the effective set the widget session carries'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from flags" -f -a "set" -d 'Set a flag in an environment (overrides the plan\'s feature of that name)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from flags" -f -a "unset" -d 'Unset a flag in an environment (the plan\'s feature of that name applies again)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from templates" -f -a "list" -d 'List a tenant\'s templates'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from templates" -f -a "set" -d 'Store (create or replace) a tenant\'s text for a key in a locale. A syntax error or a variable the key does not allow fails, naming the character position'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from templates" -f -a "delete" -d 'Delete a tenant\'s text for a key in a locale (the widget falls back again)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from templates" -f -a "preview" -d 'Render a key for a locale as the widget would show it (after fallback), or a given body. Variables the text uses but were not given render as empty'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from secrets" -f -a "status" -d 'How many tenant secrets are sealed under which key of the master key file (keys are shown by their public key, `age1…`)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from secrets" -f -a "rotate" -d 'Put a new key first in the master key file (the old one stays, so running servers keep decrypting), then re-encrypt every tenant secret under it. Re-running after an interruption finishes the same rotation; values already under the new key are skipped. Then run `secrets retire-old`'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from secrets" -f -a "retire-old" -d 'Remove every key but the newest from the master key file. Refused while any secret is not sealed under the newest key'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "list" -d 'Entries of the audit log, oldest first (one page; `--cursor` for the next)'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "export" -d 'Write entries to a file (JSON lines or CSV), streamed in constant memory; the file appears only when complete'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from visitors" -f -a "export" -d 'Everything stored about a visitor, as JSON: profile, identity, device tokens (counts and times only), conversations and every message. Recorded in the audit log as visitor.exported'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from visitors" -f -a "erase" -d 'Erase a visitor: message texts (both directions), profile, identity and tokens; their conversations keep their shape. Open sockets are closed on every node reached through Redis (with redis.url set). Erasing again changes nothing'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from retention" -f -a "run" -d 'Delete closed conversations older than their tenant\'s retention (plan, shortened by the tenant\'s setting) with their messages and outbox items, and visitors nothing refers to any more; in batches, each its own transaction (the worker does this every hour). Interrupted, it simply continues on the next run'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Print the effective configuration (secrets as ***); exit 1 when it is invalid'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "example" -d 'Print the documented example configuration with every default'
complete -c chatorical -n "__fish_chatorical_using_subcommand help; and __fish_seen_subcommand_from widget" -f -a "release" -d 'Write the versioned widget script and an embed snippet with Subresource Integrity, and print the snippet. The same binary always gives the same output'
