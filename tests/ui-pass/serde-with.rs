//! A data attribute stored through `#[serde(with = "...")]`, or through a proxy struct with
//! `#[serde(from = "...", into = "...")]`, need not implement serde itself.

use es_core::{Apply, Event, EventContext};
use serde::{Deserialize, Serialize};

#[derive(es_core::Aggregate, Default)]
struct Invoice {
    id: i64,
    cents: i64,
}

/// Not serde: stored as its number of cents.
#[derive(Clone, Copy)]
struct Money(i64);

mod cents {
    pub fn serialize<S: serde::Serializer>(money: &super::Money, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(money.0)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<super::Money, D::Error> {
        <i64 as serde::Deserialize>::deserialize(d).map(super::Money)
    }
}

#[derive(Event, Serialize, Deserialize, schemars::JsonSchema)]
#[aggregate(Invoice)]
struct Issued {
    #[data_attributes]
    #[serde(with = "cents")]
    #[schemars(with = "i64")]
    total: Money,
}

#[derive(Event, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[aggregate(Invoice)]
#[serde(from = "PaidJson", into = "PaidJson")]
struct Paid {
    #[data_attributes]
    amount: Money,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct PaidJson {
    amount: i64,
}

impl From<PaidJson> for Paid {
    fn from(json: PaidJson) -> Self {
        Paid {
            amount: Money(json.amount),
        }
    }
}

impl From<Paid> for PaidJson {
    fn from(paid: Paid) -> Self {
        PaidJson {
            amount: paid.amount.0,
        }
    }
}

impl Apply<Invoice> for Issued {
    fn apply(&self, invoice: &mut Invoice, _: &EventContext<'_>) {
        invoice.cents = self.total.0;
    }
}

impl Apply<Invoice> for Paid {
    fn apply(&self, invoice: &mut Invoice, _: &EventContext<'_>) {
        invoice.cents -= self.amount.0;
    }
}

fn main() {
    assert_eq!(<Issued as Event>::TAG, "invoice.issued");
    assert_eq!(<Paid as Event>::TAG, "invoice.paid");
}
