//! The route table as written: the `*Input` types that `parse` reads, and the questions that
//! `check` and `generate` ask of them. Uses only the crate's shared helpers (`attr`, `symbol`).

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::{Attribute, Ident, Path, Token, Visibility};

use crate::attr::type_name;
use crate::symbol::{ASYNC, PROJECT, SUBSCRIBE, TRIGGER};

/// The whole macro input.
pub(crate) struct DispatcherInput {
    pub(super) attrs: Vec<Attribute>,
    pub(super) vis: Visibility,
    pub(super) ident: Ident,
    pub(super) backends: Vec<Ident>,
    pub(super) routes: Vec<RouteInput>,
}

/// `pattern => kind: [reactors], ...;`
pub(crate) struct RouteInput {
    /// Its position in the dispatcher, naming its generated items.
    pub(super) index: usize,
    pub(super) pattern: PatternInput,
    pub(super) steps: Vec<StepInput>,
}

/// What a route matches.
#[derive(Clone)]
pub(crate) enum PatternInput {
    /// `task::Completed`
    Event(Path),
    /// `Task::*`
    Aggregate(Path, Token![*]),
    /// `*`
    All(Token![*]),
}

/// `trigger: [a, b -> [Unpinned]]`
pub(crate) struct StepInput {
    pub(super) kind: Kind,
    pub(super) kind_span: Span,
    pub(super) reactors: Vec<ReactorInput>,
    pub(super) bracket_span: Span,
}

/// `unpin_other_posts` or `unpin_other_posts -> [Unpinned, PinMoved]`
pub(crate) struct ReactorInput {
    pub(super) path: Path,
    pub(super) creates: Option<CreatesInput>,
}

/// `-> [Unpinned, PinMoved]`: the events a reactor may create.
pub(crate) struct CreatesInput {
    pub(super) arrow: Token![->],
    pub(super) events: Vec<Path>,
    pub(super) bracket_span: Span,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Trigger,
    Async,
    Project,
    Subscribe,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Trigger => TRIGGER,
            Kind::Async => ASYNC,
            Kind::Project => PROJECT,
            Kind::Subscribe => SUBSCRIBE,
        }
    }
}

impl PatternInput {
    /// The pattern as written, to compare routes.
    pub(super) fn written(&self) -> String {
        match self {
            PatternInput::Event(path) => type_name(path),
            PatternInput::Aggregate(path, _) => format!("{}::*", type_name(path)),
            PatternInput::All(_) => "*".to_owned(),
        }
    }
}

impl ToTokens for PatternInput {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            PatternInput::Event(path) => path.to_tokens(tokens),
            PatternInput::Aggregate(path, star) => {
                path.to_tokens(tokens);
                star.to_tokens(tokens);
            }
            PatternInput::All(star) => star.to_tokens(tokens),
        }
    }
}

/// A reactor's name as recorded in jobs and routes: its path as written.
pub(super) fn reactor_name(path: &Path) -> String {
    type_name(path)
}

/// The reactors of `kind` in `route`, in the order written.
pub(super) fn reactors_of(route: &RouteInput, kind: Kind) -> impl Iterator<Item = &ReactorInput> {
    route
        .steps
        .iter()
        .filter(move |step| step.kind == kind)
        .flat_map(|step| &step.reactors)
}

/// The names of the reactors of `kind` in `route` ([`reactor_name`]).
pub(super) fn names_of(route: &RouteInput, kind: Kind) -> Vec<String> {
    reactors_of(route, kind)
        .map(|reactor| reactor_name(&reactor.path))
        .collect()
}
