// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title MockGovernor
/// @notice Test double for an OpenZeppelin Governor (v5) as Steward watches it: the events
/// `ProposalCreated`, `VoteCast`, `VoteCastWithParams`, `ProposalQueued`, `ProposalExecuted` and
/// `ProposalCanceled` with OpenZeppelin's exact signatures (hence the same topic0 as a deployed
/// Governor), each emitted by an `emit...` function with the values given, and the views
/// `state`, `proposalSnapshot`, `proposalDeadline` and `proposalEta`.
/// @dev Written for Steward's tests, not derived from OpenZeppelin's code. No voting, no
/// timelock, no access control. The emitters also move the stored proposal the way a Governor
/// would: created -> Pending with its snapshot and deadline, queued -> Queued with its eta,
/// executed -> Executed, canceled -> Canceled. `setState` and `setProposalTimes` override
/// anything. Unlike a Governor, an unknown proposal does not revert: it reads as Pending with
/// zero times.
contract MockGovernor {
    /// Same members, in the same order, as OpenZeppelin's `IGovernor.ProposalState`.
    enum ProposalState {
        Pending,
        Active,
        Canceled,
        Defeated,
        Succeeded,
        Queued,
        Expired,
        Executed
    }

    struct Proposal {
        ProposalState state;
        uint256 snapshot;
        uint256 deadline;
        uint256 eta;
    }

    mapping(uint256 proposalId => Proposal) private proposals;

    event ProposalCreated(
        uint256 proposalId,
        address proposer,
        address[] targets,
        uint256[] values,
        string[] signatures,
        bytes[] calldatas,
        uint256 voteStart,
        uint256 voteEnd,
        string description
    );
    event ProposalQueued(uint256 proposalId, uint256 etaSeconds);
    event ProposalExecuted(uint256 proposalId);
    event ProposalCanceled(uint256 proposalId);
    event VoteCast(address indexed voter, uint256 proposalId, uint8 support, uint256 weight, string reason);
    event VoteCastWithParams(
        address indexed voter, uint256 proposalId, uint8 support, uint256 weight, string reason, bytes params
    );

    // ---- views (Governor function signatures) ------------------------------------------------

    function state(uint256 proposalId) external view returns (ProposalState) {
        return proposals[proposalId].state;
    }

    function proposalSnapshot(uint256 proposalId) external view returns (uint256) {
        return proposals[proposalId].snapshot;
    }

    function proposalDeadline(uint256 proposalId) external view returns (uint256) {
        return proposals[proposalId].deadline;
    }

    function proposalEta(uint256 proposalId) external view returns (uint256) {
        return proposals[proposalId].eta;
    }

    // ---- test setters (no event) -------------------------------------------------------------

    function setState(uint256 proposalId, ProposalState newState) external {
        proposals[proposalId].state = newState;
    }

    function setProposalTimes(uint256 proposalId, uint256 snapshot, uint256 deadline, uint256 eta) external {
        Proposal storage p = proposals[proposalId];
        p.snapshot = snapshot;
        p.deadline = deadline;
        p.eta = eta;
    }

    // ---- event emitters ----------------------------------------------------------------------

    /// Parameters are `memory`, not `calldata`: nine of them, five dynamic, overflow the stack
    /// as calldata slices without via-IR.
    function emitProposalCreated(
        uint256 proposalId,
        address proposer,
        address[] memory targets,
        uint256[] memory values,
        string[] memory signatures,
        bytes[] memory calldatas,
        uint256 voteStart,
        uint256 voteEnd,
        string memory description
    ) external {
        _created(proposalId, voteStart, voteEnd);
        emit ProposalCreated(
            proposalId, proposer, targets, values, signatures, calldatas, voteStart, voteEnd, description
        );
    }

    function emitVoteCast(address voter, uint256 proposalId, uint8 support, uint256 weight, string calldata reason)
        external
    {
        emit VoteCast(voter, proposalId, support, weight, reason);
    }

    function emitVoteCastWithParams(
        address voter,
        uint256 proposalId,
        uint8 support,
        uint256 weight,
        string calldata reason,
        bytes calldata params
    ) external {
        emit VoteCastWithParams(voter, proposalId, support, weight, reason, params);
    }

    function emitProposalQueued(uint256 proposalId, uint256 etaSeconds) external {
        Proposal storage p = proposals[proposalId];
        p.state = ProposalState.Queued;
        p.eta = etaSeconds;
        emit ProposalQueued(proposalId, etaSeconds);
    }

    function emitProposalExecuted(uint256 proposalId) external {
        proposals[proposalId].state = ProposalState.Executed;
        emit ProposalExecuted(proposalId);
    }

    function emitProposalCanceled(uint256 proposalId) external {
        proposals[proposalId].state = ProposalState.Canceled;
        emit ProposalCanceled(proposalId);
    }

    // ---- internals ---------------------------------------------------------------------------

    function _created(uint256 proposalId, uint256 voteStart, uint256 voteEnd) private {
        Proposal storage p = proposals[proposalId];
        p.state = ProposalState.Pending;
        p.snapshot = voteStart;
        p.deadline = voteEnd;
    }
}
