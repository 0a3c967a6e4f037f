//! The messaging deciders as the platform's repository runs them.

use kith_platform::aggregate::Decider;

use crate::domain::{
    self, Command, Conversation, DomainError, Event, Reader, ReaderCommand, ReaderEvent,
};

/// The service's name: its schema, its stream (`KITH_MESSAGING`) and its subjects.
pub const SERVICE: &str = "messaging";
/// The gRPC service's full name, for health and reflection.
pub const GRPC_SERVICE: &str = "kith.messaging.v1.MessagingService";

/// A conversation is one stream, `conversation/<id>`.
#[derive(Debug)]
pub struct ConversationDecider;

impl Decider for ConversationDecider {
    type State = Conversation;
    type Event = Event;
    type Command = Command;
    type Error = DomainError;
    const STREAM_TYPE: &'static str = "conversation";

    fn evolve(state: Conversation, event: &Event) -> Conversation {
        domain::conversation::evolve(state, event)
    }

    fn decide(state: &Conversation, command: &Command) -> Result<Vec<Event>, DomainError> {
        domain::conversation::decide(state, command)
    }
}

/// A member's read state is one stream, `reader/<member_id>`.
#[derive(Debug)]
pub struct ReaderDecider;

impl Decider for ReaderDecider {
    type State = Reader;
    type Event = ReaderEvent;
    type Command = ReaderCommand;
    type Error = DomainError;
    const STREAM_TYPE: &'static str = "reader";

    fn evolve(state: Reader, event: &ReaderEvent) -> Reader {
        domain::reader::evolve(state, event)
    }

    fn decide(state: &Reader, command: &ReaderCommand) -> Result<Vec<ReaderEvent>, DomainError> {
        domain::reader::decide(state, command)
    }
}
