//! A tenant's Stripe subscription as we keep it, and how Stripe's events move it.
//!
//! Stripe delivers events at least once and in any order, so the state follows the
//! newest object state, never arrival order: [`Tracked`] keeps, beside the
//! subscription's fields, the `created` time of the newest subscription event and of
//! the newest invoice event it applied, and refuses anything older
//! ([`Applied::Stale`]). From that state, [`Tracked::reconcile`] derives the dunning
//! (a failed payment starts a grace period; see [`super::dunning`]) and
//! [`Tracked::entitlement`] the plan the tenant should be on.
//!
//! [`status`] is the operation behind `GET /v1/billing/subscription` and
//! `chatorical billing status`.

use serde::Serialize;
use utoipa::ToSchema;

use crate::db::{Conn, Db, repo, repo::billing_subscriptions::BillingSubscriptionRow};
use crate::domain::{Resource, Scope, ScopeAccess, TenantId, rfc3339};
use crate::error::{Error, Result};
use crate::plans::PlanCode;
use crate::tenancy::{Caller, Tenant};

/// One day in milliseconds.
pub(crate) const DAY_MS: i64 = 24 * 3600 * 1000;

/// A Stripe subscription's status (Stripe's names), or `none` before any subscription
/// object of the tenant was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// No subscription seen yet (only a Checkout or an invoice of it).
    None,
    /// Created; the first payment has not succeeded yet.
    Incomplete,
    /// The first payment never succeeded (terminal).
    IncompleteExpired,
    /// In a trial.
    Trialing,
    /// Paid.
    Active,
    /// A renewal payment failed; Stripe retries it.
    PastDue,
    /// Ended (terminal).
    Canceled,
    /// Retries exhausted, left open unpaid.
    Unpaid,
    /// A trial ended without a payment method.
    Paused,
}

impl SubscriptionStatus {
    /// Stripe's name (`past_due`), or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::None => "none",
            SubscriptionStatus::Incomplete => "incomplete",
            SubscriptionStatus::IncompleteExpired => "incomplete_expired",
            SubscriptionStatus::Trialing => "trialing",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Canceled => "canceled",
            SubscriptionStatus::Unpaid => "unpaid",
            SubscriptionStatus::Paused => "paused",
        }
    }

    /// Parse Stripe's name; `None` for a status this version does not know.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => SubscriptionStatus::None,
            "incomplete" => SubscriptionStatus::Incomplete,
            "incomplete_expired" => SubscriptionStatus::IncompleteExpired,
            "trialing" => SubscriptionStatus::Trialing,
            "active" => SubscriptionStatus::Active,
            "past_due" => SubscriptionStatus::PastDue,
            "canceled" => SubscriptionStatus::Canceled,
            "unpaid" => SubscriptionStatus::Unpaid,
            "paused" => SubscriptionStatus::Paused,
            _ => return None,
        })
    }

    /// A subscription in this status never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired
        )
    }

    /// A subscription in this status is the tenant's, with or without payments due.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Trialing
                | SubscriptionStatus::Active
                | SubscriptionStatus::PastDue
                | SubscriptionStatus::Unpaid
        )
    }
}

pub use super::Interval;

/// Where a tenant stands with failed payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dunning {
    /// Nothing is owed.
    None,
    /// A payment failed: the tenant keeps its plan until `grace_until`.
    Grace,
    /// The grace period ended unpaid: the tenant is on `free` until it pays.
    Downgraded,
}

impl Dunning {
    /// `none`, `grace` or `downgraded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dunning::None => "none",
            Dunning::Grace => "grace",
            Dunning::Downgraded => "downgraded",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Dunning::None),
            "grace" => Some(Dunning::Grace),
            "downgraded" => Some(Dunning::Downgraded),
            _ => None,
        }
    }
}

/// Which subscription event a snapshot came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionEvent {
    /// `customer.subscription.created`.
    Created,
    /// `customer.subscription.updated`.
    Updated,
    /// `customer.subscription.deleted`.
    Deleted,
}

/// A subscription object as an event described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `sub_…`.
    pub id: String,
    /// `cus_…`, when present.
    pub customer: Option<String>,
    /// Its status.
    pub status: SubscriptionStatus,
    /// The plan and interval its price names, when one does.
    pub plan: Option<(String, Option<Interval>)>,
    /// End of the current period, epoch ms.
    pub current_period_end: Option<i64>,
    /// Whether it ends at the end of the period.
    pub cancel_at_period_end: bool,
}

/// Whether an event changed the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The state now reflects the event.
    Applied,
    /// Older than what the state already reflects (or about another subscription):
    /// nothing changed.
    Stale,
}

/// What the tenant's plan should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entitlement {
    /// The subscription's plan.
    Plan(String),
    /// `free`: the subscription ended, or the grace period did.
    Free,
    /// The subscription is live but names no plan we can read.
    UnknownPlan,
    /// Nothing to change (no subscription yet, or its first payment is pending).
    Unchanged,
}

/// What [`Tracked::reconcile`] changed in the dunning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DunningChange {
    /// Nothing.
    None,
    /// A payment failed: the grace period started (the agents get one notice).
    GraceStarted,
    /// Paid (or ended): the grace period or the downgrade is over.
    Cleared,
}

/// A tenant's subscription, typed: the `billing_subscriptions` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Stripe customer.
    pub customer: Option<String>,
    /// The tenant's current subscription.
    pub subscription: Option<String>,
    /// Its plan code.
    pub plan: Option<String>,
    /// Its interval.
    pub interval: Option<Interval>,
    /// Its status.
    pub status: SubscriptionStatus,
    /// End of its current period, epoch ms.
    pub current_period_end: Option<i64>,
    /// Whether it ends at the end of the period.
    pub cancel_at_period_end: bool,
    /// Failed payments.
    pub dunning: Dunning,
    /// End of the grace period, epoch ms (while `dunning` is not `none`).
    pub grace_until: Option<i64>,
    /// Stripe `created` (epoch s) of the newest subscription event applied.
    pub last_event_created: Option<i64>,
    /// Stripe `created` (epoch s) of the newest invoice event applied.
    pub last_payment_created: Option<i64>,
    /// Whether the newest invoice event was a failed payment.
    pub last_payment_failed: bool,
}

impl Tracked {
    /// A tenant nothing is known about yet.
    pub fn new(tenant_id: TenantId) -> Self {
        Tracked {
            tenant_id,
            customer: None,
            subscription: None,
            plan: None,
            interval: None,
            status: SubscriptionStatus::None,
            current_period_end: None,
            cancel_at_period_end: false,
            dunning: Dunning::None,
            grace_until: None,
            last_event_created: None,
            last_payment_created: None,
            last_payment_failed: false,
        }
    }

    /// From the stored row; `internal` for a value the migration's checks forbid.
    pub fn from_row(row: BillingSubscriptionRow) -> Result<Self> {
        let bad = |what: &str| Error::internal(format!("billing_subscriptions: bad {what}"));
        Ok(Tracked {
            tenant_id: TenantId::from(row.tenant_id),
            customer: row.stripe_customer_id,
            subscription: row.stripe_subscription_id,
            plan: row.plan_code,
            interval: row
                .interval
                .map(|i| Interval::parse(&i).ok_or_else(|| bad("interval")))
                .transpose()?,
            status: SubscriptionStatus::parse(&row.status).ok_or_else(|| bad("status"))?,
            current_period_end: row.current_period_end,
            cancel_at_period_end: row.cancel_at_period_end,
            dunning: Dunning::parse(&row.dunning).ok_or_else(|| bad("dunning"))?,
            grace_until: row.grace_until,
            last_event_created: row.last_event_created,
            last_payment_created: row.last_payment_created,
            last_payment_failed: row.last_payment_failed,
        })
    }

    /// The row to store, written at `now` (epoch ms).
    pub fn to_row(&self, now: i64) -> BillingSubscriptionRow {
        BillingSubscriptionRow {
            tenant_id: self.tenant_id.to_string(),
            stripe_customer_id: self.customer.clone(),
            stripe_subscription_id: self.subscription.clone(),
            plan_code: self.plan.clone(),
            interval: self.interval.map(|i| i.as_str().to_string()),
            status: self.status.as_str().to_string(),
            current_period_end: self.current_period_end,
            cancel_at_period_end: self.cancel_at_period_end,
            dunning: self.dunning.as_str().to_string(),
            grace_until: self.grace_until,
            last_event_created: self.last_event_created,
            last_payment_created: self.last_payment_created,
            last_payment_failed: self.last_payment_failed,
            updated_at: now,
        }
    }

    /// Make `subscription` the tenant's current one, forgetting everything about the
    /// previous one (its fields, its ordering, its dunning).
    fn adopt(&mut self, subscription: &str) {
        let customer = self.customer.take();
        *self = Tracked::new(self.tenant_id.clone());
        self.customer = customer;
        self.subscription = Some(subscription.to_string());
    }

    /// `checkout.session.completed`: link the tenant's Stripe customer and the
    /// subscription the Checkout created. A live subscription the tenant already has is
    /// kept until the new one's own events replace it.
    pub fn link_checkout(&mut self, customer: Option<&str>, subscription: Option<&str>) {
        if let Some(c) = customer {
            self.customer = Some(c.to_string());
        }
        if let Some(s) = subscription {
            match &self.subscription {
                Some(current) if current == s => {}
                Some(_)
                    if self.status.is_live() || self.status == SubscriptionStatus::Incomplete => {}
                _ => self.adopt(s),
            }
        }
    }

    /// A `customer.subscription.*` event created at `created` (epoch s). Applied when
    /// it is newer than the newest subscription event applied (at the same second, a
    /// `created` event is taken as the older one); a subscription that ended stays
    /// ended. An event about another subscription of the tenant replaces the current
    /// one when that one ended, or when the other is live and not older.
    pub fn apply_subscription(
        &mut self,
        kind: SubscriptionEvent,
        created: i64,
        snap: &Snapshot,
    ) -> Applied {
        match &self.subscription {
            Some(current) if *current == snap.id => {
                if self.status.is_terminal() {
                    return Applied::Stale;
                }
                if let Some(last) = self.last_event_created
                    && (created < last || (created == last && kind == SubscriptionEvent::Created))
                {
                    return Applied::Stale;
                }
            }
            Some(_) => {
                let replace = self.status.is_terminal()
                    || self.status == SubscriptionStatus::None
                    || (!snap.status.is_terminal()
                        && kind != SubscriptionEvent::Deleted
                        && self.last_event_created.is_none_or(|last| created >= last));
                if !replace {
                    return Applied::Stale;
                }
                self.adopt(&snap.id);
            }
            None => self.adopt(&snap.id),
        }
        if let Some(c) = &snap.customer {
            self.customer = Some(c.clone());
        }
        self.status = if kind == SubscriptionEvent::Deleted && !snap.status.is_terminal() {
            SubscriptionStatus::Canceled
        } else {
            snap.status
        };
        match &snap.plan {
            Some((code, interval)) => {
                self.plan = Some(code.clone());
                self.interval = *interval;
            }
            None => {
                self.plan = None;
                self.interval = None;
            }
        }
        self.current_period_end = snap.current_period_end;
        self.cancel_at_period_end = snap.cancel_at_period_end;
        self.last_event_created = Some(created);
        Applied::Applied
    }

    /// `invoice.paid` (`paid`) or `invoice.payment_failed` of `subscription`, created
    /// at `created` (epoch s). Applied when newer than the newest invoice event applied
    /// (at the same second a payment beats a failure). An invoice of another
    /// subscription counts only when the tenant has none that is going on (it may
    /// arrive before that subscription's own `created` event).
    pub fn apply_invoice(
        &mut self,
        subscription: &str,
        customer: Option<&str>,
        created: i64,
        paid: bool,
    ) -> Applied {
        match &self.subscription {
            Some(current) if current == subscription => {}
            Some(_) if !self.status.is_terminal() => return Applied::Stale,
            _ => self.adopt(subscription),
        }
        if let Some(last) = self.last_payment_created
            && (created < last || (created == last && !paid))
        {
            return Applied::Stale;
        }
        if let Some(c) = customer {
            self.customer = Some(c.to_string());
        }
        self.last_payment_created = Some(created);
        self.last_payment_failed = !paid;
        Applied::Applied
    }

    /// Whether a payment is owed, and since when (epoch s): the subscription says
    /// `past_due`/`unpaid` and no payment came after it said so, or it says it is fine
    /// but a payment failed after that.
    fn arrears_since(&self) -> Option<i64> {
        let snapshot = self.last_event_created.unwrap_or(i64::MIN);
        let payment = self.last_payment_created;
        let paid_after = !self.last_payment_failed && payment.is_some_and(|p| p > snapshot);
        let failed_after = self.last_payment_failed && payment.is_some_and(|p| p > snapshot);
        match self.status {
            SubscriptionStatus::PastDue | SubscriptionStatus::Unpaid if !paid_after => {
                self.last_event_created
            }
            SubscriptionStatus::Active | SubscriptionStatus::Trialing if failed_after => payment,
            _ => None,
        }
    }

    /// Bring the dunning in line with the state: a payment owed starts a grace period
    /// of `grace_days` from when it was first owed (once: a later failure does not
    /// extend it, and a tenant already downgraded stays so); nothing owed ends it.
    pub fn reconcile(&mut self, grace_days: u32) -> DunningChange {
        match self.arrears_since() {
            Some(since) if self.dunning == Dunning::None => {
                self.dunning = Dunning::Grace;
                self.grace_until = Some(
                    since
                        .saturating_mul(1000)
                        .saturating_add(i64::from(grace_days) * DAY_MS),
                );
                DunningChange::GraceStarted
            }
            Some(_) => DunningChange::None,
            None if self.dunning != Dunning::None => {
                self.dunning = Dunning::None;
                self.grace_until = None;
                DunningChange::Cleared
            }
            None => DunningChange::None,
        }
    }

    /// The grace period ended unpaid: the tenant goes to `free`. False when it is not
    /// (or no longer) in a grace period that ended by `now` (epoch ms).
    pub fn grace_expired(&mut self, now: i64) -> bool {
        if self.dunning == Dunning::Grace && self.grace_until.is_some_and(|g| g <= now) {
            self.dunning = Dunning::Downgraded;
            true
        } else {
            false
        }
    }

    /// The plan the tenant should be on now.
    pub fn entitlement(&self) -> Entitlement {
        match self.status {
            s if s.is_live() => match (&self.plan, self.dunning) {
                (_, Dunning::Downgraded) => Entitlement::Free,
                (Some(plan), _) => Entitlement::Plan(plan.clone()),
                (None, _) => Entitlement::UnknownPlan,
            },
            SubscriptionStatus::Canceled
            | SubscriptionStatus::IncompleteExpired
            | SubscriptionStatus::Paused => Entitlement::Free,
            _ => Entitlement::Unchanged,
        }
    }
}

/// Where a tenant stands with billing: `GET /v1/billing/subscription`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BillingStatus {
    /// The tenant's slug.
    pub tenant: String,
    /// The plan the tenant is on now (what its requests are held to).
    pub plan: String,
    /// The plan of its Stripe subscription, when it has one (differs from `plan` after
    /// a downgrade for non-payment).
    pub subscription_plan: Option<String>,
    /// The subscription's status (Stripe's name), `none` without one.
    pub status: SubscriptionStatus,
    /// `month` or `year`.
    pub interval: Option<Interval>,
    /// End of the paid period, RFC 3339.
    pub current_period_end: Option<String>,
    /// The subscription ends at the end of the period (cancelled in the portal).
    pub cancel_at_period_end: bool,
    /// Failed payments: `none`, `grace` (the plan is kept until `grace_until`) or
    /// `downgraded` (on `free` until paid).
    pub dunning: Dunning,
    /// End of the grace period, RFC 3339, while payments are owed.
    pub grace_until: Option<String>,
    /// The Stripe customer (`cus_…`).
    pub stripe_customer_id: Option<String>,
    /// The Stripe subscription (`sub_…`).
    pub stripe_subscription_id: Option<String>,
}

/// Where `tenant` stands with billing (`billing:read`; a tenant key for its own tenant).
pub async fn status(db: &Db, caller: &Caller, tenant: &Tenant) -> Result<BillingStatus> {
    caller.require(&Scope::new(Resource::Billing, ScopeAccess::Read))?;
    caller.check_tenant(tenant)?;
    let mut pc = db.conn().await?;
    let tracked = match repo::billing_subscriptions::get(&mut pc.as_conn(), &tenant.id).await? {
        Some(row) => Tracked::from_row(row)?,
        None => Tracked::new(tenant.id.clone()),
    };
    // The plan as it is now (the tenant given may be older than the last webhook).
    let plan = crate::plans::for_tenant(&mut pc.as_conn(), &tenant.id)
        .await?
        .code;
    Ok(BillingStatus {
        tenant: tenant.slug.clone(),
        plan: plan.to_string(),
        subscription_plan: tracked.plan,
        status: tracked.status,
        interval: tracked.interval,
        current_period_end: tracked.current_period_end.map(rfc3339),
        cancel_at_period_end: tracked.cancel_at_period_end,
        dunning: tracked.dunning,
        grace_until: tracked.grace_until.map(rfc3339),
        stripe_customer_id: tracked.customer,
        stripe_subscription_id: tracked.subscription,
    })
}

/// Put the tenant on the plan its subscription entitles it to ([`Tracked::entitlement`]),
/// inside the caller's transaction: the same write as [`crate::plans::set_tenant_plan`],
/// which takes effect at the tenant's next request. A plan made inactive since the
/// subscription began is kept (as for any tenant on it). `known` is false, nothing
/// changed, when the subscription names a plan this server does not have.
pub(crate) async fn enforce(tx: &mut Conn<'_>, tracked: &Tracked, now: i64) -> Result<Enforced> {
    let unchanged = |known| Enforced { known, moved: None };
    let code = match tracked.entitlement() {
        Entitlement::Plan(code) => code,
        Entitlement::Free => PlanCode::FREE.to_string(),
        Entitlement::UnknownPlan => return Ok(unchanged(false)),
        Entitlement::Unchanged => return Ok(unchanged(true)),
    };
    if repo::plans::get(tx, &code).await?.is_none() {
        return Ok(unchanged(false));
    }
    let current = repo::plans::of_tenant(tx, &tracked.tenant_id).await?;
    match current {
        Some(p) if p.code == code => Ok(unchanged(true)),
        current => {
            repo::plans::set_tenant_plan(tx, &tracked.tenant_id, &code, now).await?;
            Ok(Enforced {
                known: true,
                moved: current.map(|p| (p.code, code)),
            })
        }
    }
}

/// What [`enforce`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Enforced {
    /// False when the subscription names a plan this server does not have.
    pub known: bool,
    /// The tenant's plan changed: (from, to).
    pub moved: Option<(String, String)>,
}

impl Tracked {
    /// What the audit log shows of the subscription (no customer, no email: Stripe's
    /// ids of the subscription, its plan, interval, status, period and dunning).
    fn audit_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("subscription".into(), self.subscription.clone().into());
        m.insert("plan".into(), self.plan.clone().into());
        m.insert(
            "interval".into(),
            self.interval.map(|i| i.as_str().to_string()).into(),
        );
        m.insert("status".into(), self.status.as_str().into());
        m.insert(
            "current_period_end".into(),
            self.current_period_end.map(rfc3339).into(),
        );
        m.insert(
            "cancel_at_period_end".into(),
            self.cancel_at_period_end.into(),
        );
        m.insert("dunning".into(), self.dunning.as_str().into());
        m.insert("grace_until".into(), self.grace_until.map(rfc3339).into());
        m
    }

    /// The fields [`Tracked::audit_fields`] shows that differ from `before`, as
    /// `{field: {from, to}}`; empty when nothing the log shows changed.
    pub(crate) fn audit_diff(
        &self,
        before: &Tracked,
    ) -> serde_json::Map<String, serde_json::Value> {
        let (a, b) = (before.audit_fields(), self.audit_fields());
        b.into_iter()
            .filter(|(k, v)| a.get(k) != Some(v))
            .map(|(k, v)| {
                let from = a.get(&k).cloned().unwrap_or_default();
                (k, serde_json::json!({ "from": from, "to": v }))
            })
            .collect()
    }
}

/// `chatorical_<plan code>_<month|year>`: the lookup key `plans sync` gives a plan's
/// price; the plan and interval it names.
pub fn parse_lookup_key(key: &str) -> Option<(String, Interval)> {
    let rest = key.strip_prefix("chatorical_")?;
    let (code, interval) = rest.rsplit_once('_')?;
    let code = PlanCode::parse("lookup_key", code).ok()?;
    Some((code.as_str().to_string(), Interval::parse(interval)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(status: SubscriptionStatus, plan: &str) -> Snapshot {
        Snapshot {
            id: "sub_1".into(),
            customer: Some("cus_1".into()),
            status,
            plan: Some((plan.into(), Some(Interval::Month))),
            current_period_end: Some(1_000),
            cancel_at_period_end: false,
        }
    }

    fn tracked() -> Tracked {
        Tracked::new(TenantId::from("tn_1"))
    }

    use SubscriptionEvent::{Created, Deleted, Updated};
    use SubscriptionStatus::{Active, Canceled, Incomplete, PastDue};

    #[test]
    fn lookup_keys_name_a_plan_and_an_interval() {
        assert_eq!(
            parse_lookup_key("chatorical_pro_month"),
            Some(("pro".into(), Interval::Month))
        );
        assert_eq!(
            parse_lookup_key("chatorical_pro-2_year"),
            Some(("pro-2".into(), Interval::Year))
        );
        for bad in [
            "pro_month",
            "chatorical_pro_week",
            "chatorical_month",
            "chatorical__month",
            "chatorical_Pro_month",
            "other_pro_month",
        ] {
            assert_eq!(parse_lookup_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn subscription_events_apply_newest_first_whatever_the_arrival_order() {
        let mut t = tracked();
        let mut cancel = snap(Active, "business");
        cancel.cancel_at_period_end = true;
        assert_eq!(t.apply_subscription(Updated, 30, &cancel), Applied::Applied);
        assert_eq!(
            t.apply_subscription(Updated, 20, &snap(Active, "pro")),
            Applied::Stale
        );
        assert_eq!(
            t.apply_subscription(Created, 10, &snap(Incomplete, "pro")),
            Applied::Stale
        );
        assert_eq!(t.plan.as_deref(), Some("business"));
        assert!(t.cancel_at_period_end);
        assert_eq!(t.last_event_created, Some(30));
        // At the same second, `created` is the older event; `updated` is applied.
        assert_eq!(
            t.apply_subscription(Created, 30, &snap(Incomplete, "pro")),
            Applied::Stale
        );
        assert_eq!(
            t.apply_subscription(Updated, 30, &snap(Active, "pro")),
            Applied::Applied
        );
        // Deleted is final: nothing about that subscription applies after it.
        assert_eq!(
            t.apply_subscription(Deleted, 40, &snap(Canceled, "pro")),
            Applied::Applied
        );
        assert_eq!(t.entitlement(), Entitlement::Free);
        assert_eq!(
            t.apply_subscription(Updated, 50, &snap(Active, "pro")),
            Applied::Stale
        );
    }

    #[test]
    fn another_live_subscription_replaces_an_ended_one_but_not_a_newer_one() {
        let mut t = tracked();
        t.apply_subscription(Created, 10, &snap(Active, "pro"));
        let mut other = snap(Active, "business");
        other.id = "sub_2".into();
        // Older than what we hold: stale.
        assert_eq!(t.apply_subscription(Updated, 5, &other), Applied::Stale);
        assert_eq!(t.apply_subscription(Created, 20, &other), Applied::Applied);
        assert_eq!(t.subscription.as_deref(), Some("sub_2"));
        // The old one ending afterwards does not touch the new one.
        assert_eq!(
            t.apply_subscription(Deleted, 30, &snap(Canceled, "pro")),
            Applied::Stale
        );
        assert_eq!(t.entitlement(), Entitlement::Plan("business".into()));
    }

    #[test]
    fn an_invoice_paid_before_its_subscription_was_seen_still_ends_right() {
        let mut t = tracked();
        assert_eq!(
            t.apply_invoice("sub_1", Some("cus_1"), 12, true),
            Applied::Applied
        );
        assert_eq!(t.entitlement(), Entitlement::Unchanged);
        assert_eq!(
            t.apply_subscription(Created, 10, &snap(Active, "pro")),
            Applied::Applied
        );
        assert_eq!(t.reconcile(7), DunningChange::None);
        assert_eq!(t.entitlement(), Entitlement::Plan("pro".into()));
    }

    #[test]
    fn a_failed_payment_starts_one_grace_period_and_a_payment_ends_it() {
        let mut t = tracked();
        t.apply_subscription(Created, 100, &snap(Active, "pro"));
        assert_eq!(t.reconcile(7), DunningChange::None);
        t.apply_invoice("sub_1", None, 200, false);
        assert_eq!(t.reconcile(7), DunningChange::GraceStarted);
        assert_eq!(t.grace_until, Some(200_000 + 7 * DAY_MS));
        // Stripe marks it past_due a moment later: same grace, no second notice.
        t.apply_subscription(Updated, 201, &snap(PastDue, "pro"));
        assert_eq!(t.reconcile(7), DunningChange::None);
        // A retry fails too: the deadline does not move.
        t.apply_invoice("sub_1", None, 300, false);
        assert_eq!(t.reconcile(7), DunningChange::None);
        assert_eq!(t.grace_until, Some(200_000 + 7 * DAY_MS));
        assert_eq!(t.entitlement(), Entitlement::Plan("pro".into()));
        // An older failure arriving late is stale.
        assert_eq!(t.apply_invoice("sub_1", None, 150, false), Applied::Stale);
        // Paid: grace over, plan kept.
        t.apply_invoice("sub_1", None, 400, true);
        assert_eq!(t.reconcile(7), DunningChange::Cleared);
        assert_eq!((t.dunning, t.grace_until), (Dunning::None, None));
        assert_eq!(t.entitlement(), Entitlement::Plan("pro".into()));
    }

    #[test]
    fn past_due_then_the_deadline_downgrades_until_paid() {
        let mut t = tracked();
        t.apply_subscription(Updated, 100, &snap(PastDue, "pro"));
        assert_eq!(t.reconcile(3), DunningChange::GraceStarted);
        let deadline = 100_000 + 3 * DAY_MS;
        assert!(!t.grace_expired(deadline - 1));
        assert!(t.grace_expired(deadline));
        assert!(!t.grace_expired(deadline + 1), "once");
        assert_eq!(t.entitlement(), Entitlement::Free);
        // Still past_due later: stays downgraded.
        t.apply_subscription(Updated, 500, &snap(PastDue, "pro"));
        assert_eq!(t.reconcile(3), DunningChange::None);
        assert_eq!(t.entitlement(), Entitlement::Free);
        // Paid: back on the plan.
        t.apply_invoice("sub_1", None, 600, true);
        assert_eq!(t.reconcile(3), DunningChange::Cleared);
        assert_eq!(t.entitlement(), Entitlement::Plan("pro".into()));
    }

    #[test]
    fn a_failure_older_than_an_active_snapshot_starts_nothing() {
        let mut t = tracked();
        t.apply_subscription(Updated, 300, &snap(Active, "pro"));
        t.apply_invoice("sub_1", None, 200, false);
        assert_eq!(t.reconcile(7), DunningChange::None);
        assert_eq!(t.dunning, Dunning::None);
    }

    #[test]
    fn checkout_links_without_dropping_a_live_subscription() {
        let mut t = tracked();
        t.link_checkout(Some("cus_1"), Some("sub_1"));
        assert_eq!(t.subscription.as_deref(), Some("sub_1"));
        assert_eq!(t.status, SubscriptionStatus::None);
        t.apply_subscription(Created, 10, &snap(Active, "pro"));
        t.link_checkout(Some("cus_1"), Some("sub_2"));
        assert_eq!(t.subscription.as_deref(), Some("sub_1"));
        t.apply_subscription(Deleted, 20, &snap(Canceled, "pro"));
        t.link_checkout(Some("cus_1"), Some("sub_2"));
        assert_eq!(t.subscription.as_deref(), Some("sub_2"));
        assert_eq!(t.status, SubscriptionStatus::None);
        assert_eq!(t.customer.as_deref(), Some("cus_1"));
    }
}
