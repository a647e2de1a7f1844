//! `plans sync` to Stripe: the plan catalogue as Stripe Products and Prices.
//!
//! [`Stripe`] is a [`SyncTarget`]: it reads what Stripe holds (every Product with
//! `metadata.chatorical_plan`, the Prices holding the plans' lookup keys, the other
//! active Prices of each plan's Product), then per plan of the file:
//! - creates the Product, or updates its name and `active` when they differ (a plan
//!   made inactive deactivates its Product; with `prune`, so does a plan the file lacks);
//! - per interval sold, keeps the Price holding `chatorical_<code>_<interval>` when it
//!   is active, EUR, of that amount and interval, on the plan's Product; otherwise
//!   creates a new Price with the lookup key and `transfer_lookup_key` (Stripe prices
//!   are immutable) and deactivates the old one; an interval no longer sold has its
//!   Price deactivated;
//! - deactivates any other active Price of the plan's Product (left over by a sync
//!   that stopped between creating a new Price and archiving the old one).
//!
//! Nothing is written when Stripe already matches, so a second run makes no write
//! call. Every write carries an idempotency key derived from the intended state and
//! the state it starts from, and every step is decided from what Stripe holds now: a
//! run stopped by an error (Stripe's error code and the plan are named) is finished by
//! the next one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use stripe::StripeRequest as _;
use stripe_product::price::{
    CreatePrice, CreatePriceRecurring, CreatePriceRecurringInterval, ListPrice, UpdatePrice,
};
use stripe_product::product::{CreateProduct, ListProduct, UpdateProduct};
use stripe_product::{Price, Product, RecurringInterval};
use stripe_types::Currency;

use super::{
    Billing, Interval, META_INTERVAL, META_PLAN, idempotency_key, lookup_key, stripe_failure,
};
use crate::error::{Error, Result};
use crate::plans::catalogue::{Action, Catalogue, PlanChange, SyncOptions, SyncTarget};
use crate::plans::{FieldChange, PlanCode, PlanSpec};
use crate::tenancy::Caller;

/// What a Stripe sync is doing, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// Stripe was read; this many plans are to be synced.
    Started {
        /// Plans in the file (and pruned ones).
        plans: usize,
    },
    /// A write call to Stripe is being made (in a dry run: would be made).
    Call {
        /// The plan it is for.
        code: &'a PlanCode,
        /// `POST /v1/prices (…)`.
        call: &'a str,
    },
    /// A plan is done.
    PlanDone {
        /// The plan.
        code: &'a PlanCode,
        /// What happened to it.
        action: &'a Action,
    },
}

/// A progress callback.
pub type OnProgress<'a> = &'a (dyn Fn(Progress<'_>) + Send + Sync);

/// Stripe as a sync target.
pub struct Stripe<'a> {
    billing: &'a Billing,
    progress: OnProgress<'a>,
}

impl<'a> Stripe<'a> {
    /// Stripe as a sync target, reporting progress to `progress`.
    pub fn new(billing: &'a Billing, progress: OnProgress<'a>) -> Self {
        Stripe { billing, progress }
    }
}

/// What Stripe holds for the catalogue.
struct Holdings {
    /// Our Products by plan code.
    products: BTreeMap<String, Product>,
    /// Prices by lookup key.
    prices: HashMap<String, Price>,
}

impl SyncTarget for Stripe<'_> {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn apply(
        &self,
        _caller: &Caller,
        catalogue: &Catalogue,
        options: SyncOptions,
    ) -> Result<Vec<PlanChange>> {
        let client = self.billing.client();
        let keys: Vec<String> = catalogue
            .plans
            .keys()
            .flat_map(|code| Interval::ALL.map(|i| lookup_key(code, i)))
            .collect();
        let held = Holdings {
            products: read_products(client).await?,
            prices: read_prices(client, &keys).await?,
        };
        let pruned: Vec<PlanCode> = if options.prune {
            held.products
                .iter()
                .filter(|(code, product)| {
                    product.active && !catalogue.plans.keys().any(|c| c.as_str() == *code)
                })
                .filter_map(|(code, _)| PlanCode::parse("code", code).ok())
                .collect()
        } else {
            Vec::new()
        };
        (self.progress)(Progress::Started {
            plans: catalogue.plans.len() + pruned.len(),
        });
        let mut out = Vec::new();
        let mut work: Vec<(&PlanCode, Option<&PlanSpec>)> = catalogue
            .plans
            .iter()
            .map(|(code, spec)| (code, Some(spec)))
            .collect();
        work.extend(pruned.iter().map(|code| (code, None)));
        work.sort_by(|a, b| a.0.cmp(b.0));
        for (code, spec) in work {
            let mut plan = PlanSync {
                billing: self.billing,
                progress: self.progress,
                code,
                dry_run: options.dry_run,
                calls: Vec::new(),
                changes: Vec::new(),
                deactivated: BTreeSet::new(),
            };
            let action = match spec {
                Some(spec) => plan.sync(spec, &held).await,
                None => plan.prune(&held).await,
            }
            .map_err(|e| in_plan(code, e))?;
            (self.progress)(Progress::PlanDone {
                code,
                action: &action,
            });
            out.push(PlanChange {
                code: code.clone(),
                action,
                calls: plan.calls,
            });
        }
        Ok(out)
    }
}

/// Name the plan in an error (`plan `pro`: …`), keeping its code and details.
fn in_plan(code: &PlanCode, e: Error) -> Error {
    let mut details = e.details.clone().unwrap_or_else(|| serde_json::json!({}));
    if let Some(map) = details.as_object_mut() {
        map.insert("plan".into(), code.as_str().into());
    }
    Error {
        message: format!("plan `{code}`: {}", e.message),
        details: Some(details),
        ..e
    }
}

/// Every Product carrying `metadata.chatorical_plan`, by plan (the active one when a
/// plan has several).
async fn read_products(client: &stripe::Client) -> Result<BTreeMap<String, Product>> {
    let mut out: BTreeMap<String, Product> = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut request = ListProduct::new().limit(100);
        if let Some(id) = &after {
            request = request.starting_after(id.clone());
        }
        let page = request
            .send(client)
            .await
            .map_err(|e| stripe_failure("listing products", e))?;
        after = page.data.last().map(|p| p.id.as_str().to_string());
        for product in page.data {
            let Some(code) = product.metadata.get(META_PLAN).cloned() else {
                continue;
            };
            let keep_old = out.get(&code).is_some_and(|old| old.active);
            if !keep_old {
                out.insert(code, product);
            }
        }
        if !page.has_more || after.is_none() {
            return Ok(out);
        }
    }
}

/// The Prices holding `keys`, by lookup key (Stripe takes 10 keys a call).
async fn read_prices(client: &stripe::Client, keys: &[String]) -> Result<HashMap<String, Price>> {
    let mut out = HashMap::new();
    for chunk in keys.chunks(10) {
        let page = ListPrice::new()
            .lookup_keys(chunk.to_vec())
            .limit(100)
            .send(client)
            .await
            .map_err(|e| stripe_failure("listing prices by lookup key", e))?;
        for price in page.data {
            if let Some(key) = price.lookup_key.clone() {
                out.insert(key, price);
            }
        }
    }
    Ok(out)
}

/// One plan's sync: the calls it made and the fields it changed.
struct PlanSync<'a> {
    billing: &'a Billing,
    progress: OnProgress<'a>,
    code: &'a PlanCode,
    dry_run: bool,
    calls: Vec<String>,
    changes: Vec<FieldChange>,
    /// Prices deactivated by this sync (or, in a dry run, to be).
    deactivated: BTreeSet<String>,
}

impl PlanSync<'_> {
    fn client(&self) -> &stripe::Client {
        self.billing.client()
    }

    /// Record a write call; false in a dry run (then it is not made).
    fn call(&mut self, call: String) -> bool {
        (self.progress)(Progress::Call {
            code: self.code,
            call: &call,
        });
        self.calls.push(call);
        !self.dry_run
    }

    fn change(&mut self, field: &str, old: String, new: String) {
        self.changes.push(FieldChange {
            field: field.to_string(),
            old,
            new,
        });
    }

    async fn sync(&mut self, spec: &PlanSpec, held: &Holdings) -> Result<Action> {
        let code = self.code.as_str();
        let product = held.products.get(code);
        let created = product.is_none();
        let product_id = match product {
            None => self.create_product(spec).await?,
            Some(product) => {
                self.update_product(product, spec).await?;
                Some(product.id.as_str().to_string())
            }
        };
        let mut keep = BTreeSet::new();
        for interval in Interval::ALL {
            let kept = self
                .sync_price(spec, interval, product_id.as_deref(), held)
                .await?;
            keep.extend(kept);
        }
        if let Some(product) = product {
            self.deactivate_strays(product.id.as_str(), &keep).await?;
        }
        Ok(if created {
            Action::Created
        } else if self.changes.is_empty() && self.calls.is_empty() {
            Action::Unchanged
        } else {
            Action::Updated {
                changes: std::mem::take(&mut self.changes),
            }
        })
    }

    /// A plan the file lacks (with `prune`): its active Product is deactivated.
    async fn prune(&mut self, held: &Holdings) -> Result<Action> {
        if let Some(product) = held.products.get(self.code.as_str())
            && product.active
        {
            let id = product.id.as_str().to_string();
            if self.call(format!("POST /v1/products/{id} (active=false)")) {
                let strategy = idempotency_key(&["product.deactivate", &id]);
                UpdateProduct::new(id.as_str())
                    .active(false)
                    .customize()
                    .request_strategy(strategy)
                    .send(self.client())
                    .await
                    .map_err(|e| stripe_failure("deactivating the product", e))?;
            }
        }
        Ok(Action::Deactivated)
    }

    fn metadata(&self) -> HashMap<String, String> {
        HashMap::from([(META_PLAN.to_string(), self.code.as_str().to_string())])
    }

    /// Create the plan's Product; its id (`None` in a dry run).
    async fn create_product(&mut self, spec: &PlanSpec) -> Result<Option<String>> {
        let call = format!(
            "POST /v1/products (name {}, active={}, metadata.{META_PLAN}={})",
            quoted(&spec.name),
            spec.active,
            self.code
        );
        if !self.call(call) {
            return Ok(None);
        }
        let active = spec.active.to_string();
        let strategy =
            idempotency_key(&["product.create", self.code.as_str(), &spec.name, &active]);
        let product = CreateProduct::new(spec.name.as_str())
            .active(spec.active)
            .metadata(self.metadata())
            .customize()
            .request_strategy(strategy)
            .send(self.client())
            .await
            .map_err(|e| stripe_failure("creating the product", e))?;
        Ok(Some(product.id.as_str().to_string()))
    }

    /// Update the Product's name and `active` when they differ from the plan.
    async fn update_product(&mut self, product: &Product, spec: &PlanSpec) -> Result<()> {
        let id = product.id.as_str().to_string();
        let mut fields = Vec::new();
        if product.name != spec.name {
            self.change("name", quoted(&product.name), quoted(&spec.name));
            fields.push(format!("name {}", quoted(&spec.name)));
        }
        if product.active != spec.active {
            self.change(
                "active",
                product.active.to_string(),
                spec.active.to_string(),
            );
            fields.push(format!("active={}", spec.active));
        }
        if fields.is_empty() {
            return Ok(());
        }
        if !self.call(format!("POST /v1/products/{id} ({})", fields.join(", "))) {
            return Ok(());
        }
        let (old_active, new_active) = (product.active.to_string(), spec.active.to_string());
        let strategy = idempotency_key(&[
            "product.update",
            &id,
            &product.name,
            &old_active,
            &spec.name,
            &new_active,
        ]);
        UpdateProduct::new(id.as_str())
            .name(spec.name.as_str())
            .active(spec.active)
            .metadata(self.metadata())
            .customize()
            .request_strategy(strategy)
            .send(self.client())
            .await
            .map_err(|e| stripe_failure("updating the product", e))?;
        Ok(())
    }

    /// Make the interval's Price match the plan; the id of the Price that holds the
    /// lookup key afterwards, when there is one.
    async fn sync_price(
        &mut self,
        spec: &PlanSpec,
        interval: Interval,
        product_id: Option<&str>,
        held: &Holdings,
    ) -> Result<Option<String>> {
        let key = lookup_key(self.code, interval);
        let holder = held.prices.get(&key);
        let held_amount = holder.filter(|p| p.active).and_then(|p| p.unit_amount);
        let show = |amount: Option<i64>| amount.map_or_else(|| "-".to_string(), |a| a.to_string());
        match interval.price_of(spec) {
            Some(amount) => {
                if let (Some(price), Some(product_id)) = (holder, product_id)
                    && matches(price, amount, interval, product_id)
                {
                    return Ok(Some(price.id.as_str().to_string()));
                }
                self.change(
                    interval.price_field(),
                    show(held_amount),
                    amount.to_string(),
                );
                let id = self
                    .create_price(amount, interval, &key, product_id, holder)
                    .await?;
                if let Some(old) = holder.filter(|p| p.active) {
                    self.deactivate_price(old.id.as_str()).await?;
                }
                Ok(id)
            }
            None => {
                if let Some(old) = holder.filter(|p| p.active) {
                    self.change(interval.price_field(), show(held_amount), "-".into());
                    self.deactivate_price(old.id.as_str()).await?;
                }
                Ok(None)
            }
        }
    }

    async fn create_price(
        &mut self,
        amount: i64,
        interval: Interval,
        key: &str,
        product_id: Option<&str>,
        holder: Option<&Price>,
    ) -> Result<Option<String>> {
        let from = holder.map_or("-", |p| p.id.as_str());
        let call = format!(
            "POST /v1/prices ({amount} EUR cents every {interval}, lookup_key {key}{}, product {})",
            match holder {
                Some(p) => format!(" transferred from {}", p.id.as_str()),
                None => String::new(),
            },
            product_id.unwrap_or("(the new product)"),
        );
        if !self.call(call) {
            return Ok(None);
        }
        let product_id = product_id.unwrap_or_default();
        let amount_text = amount.to_string();
        let strategy = idempotency_key(&[
            "price.create",
            key,
            product_id,
            &amount_text,
            interval.as_str(),
            from,
        ]);
        let recurring = CreatePriceRecurring::new(match interval {
            Interval::Month => CreatePriceRecurringInterval::Month,
            Interval::Year => CreatePriceRecurringInterval::Year,
        });
        let mut metadata = self.metadata();
        metadata.insert(META_INTERVAL.into(), interval.as_str().into());
        let price = CreatePrice::new(Currency::EUR)
            .product(product_id)
            .unit_amount(amount)
            .recurring(recurring)
            .lookup_key(key)
            .transfer_lookup_key(true)
            .metadata(metadata)
            .customize()
            .request_strategy(strategy)
            .send(self.client())
            .await
            .map_err(|e| stripe_failure(&format!("creating the {interval} price"), e))?;
        Ok(Some(price.id.as_str().to_string()))
    }

    async fn deactivate_price(&mut self, id: &str) -> Result<()> {
        self.deactivated.insert(id.to_string());
        if !self.call(format!("POST /v1/prices/{id} (active=false)")) {
            return Ok(());
        }
        let strategy = idempotency_key(&["price.deactivate", id]);
        UpdatePrice::new(id)
            .active(false)
            .customize()
            .request_strategy(strategy)
            .send(self.client())
            .await
            .map_err(|e| stripe_failure(&format!("deactivating price {id}"), e))?;
        Ok(())
    }

    /// Deactivate the Product's other active Prices of ours (not in `keep`).
    async fn deactivate_strays(&mut self, product_id: &str, keep: &BTreeSet<String>) -> Result<()> {
        let page = ListPrice::new()
            .product(product_id)
            .active(true)
            .limit(100)
            .send(self.client())
            .await
            .map_err(|e| stripe_failure("listing the product's prices", e))?;
        for price in page.data {
            let ours =
                price.metadata.get(META_PLAN).map(String::as_str) == Some(self.code.as_str());
            let id = price.id.as_str();
            if ours && !keep.contains(id) && !self.deactivated.contains(id) {
                let amount = price
                    .unit_amount
                    .map_or_else(|| "-".into(), |a| a.to_string());
                self.change(
                    &format!("price {}", price.id.as_str()),
                    amount,
                    "archived".into(),
                );
                self.deactivate_price(price.id.as_str()).await?;
            }
        }
        Ok(())
    }
}

/// Whether `price` is the plan's price as it should be.
fn matches(price: &Price, amount: i64, interval: Interval, product_id: &str) -> bool {
    let want = match interval {
        Interval::Month => RecurringInterval::Month,
        Interval::Year => RecurringInterval::Year,
    };
    price.active
        && price.unit_amount == Some(amount)
        && price.currency == Currency::EUR
        && price.product.id().as_str() == product_id
        && price
            .recurring
            .as_ref()
            .is_some_and(|r| r.interval == want && r.interval_count == 1)
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}
