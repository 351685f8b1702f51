// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title MockPriceFeed
/// @notice Test double for a Chainlink-style price aggregator: `latestRoundData`, `getRoundData`,
/// `decimals`, `description`, `version` and the legacy `latestAnswer`/`latestTimestamp`/
/// `latestRound`, all settable by tests.
/// @dev Written for Steward's tests. `setAnswer` starts a new round stamped with the block time
/// and emits the aggregator events `NewRound` and `AnswerUpdated`; `setRoundData` writes any
/// round verbatim and emits nothing, which is how a test builds a stale or inconsistent feed
/// (a real stale feed emits nothing either). Defaults: 8 decimals, description "MOCK / USD".
contract MockPriceFeed {
    struct Round {
        int256 answer;
        uint256 startedAt;
        uint256 updatedAt;
        uint80 answeredInRound;
    }

    uint8 public decimals = 8;
    string public description = "MOCK / USD";
    uint256 public constant version = 4;

    uint80 public latestRound;
    mapping(uint80 roundId => Round) private rounds;

    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);

    error NoDataPresent();

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return getRoundData(latestRound);
    }

    function getRoundData(uint80 roundId)
        public
        view
        returns (uint80, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        Round storage r = rounds[roundId];
        if (r.updatedAt == 0 && r.startedAt == 0) revert NoDataPresent();
        return (roundId, r.answer, r.startedAt, r.updatedAt, r.answeredInRound);
    }

    function latestAnswer() external view returns (int256) {
        return rounds[latestRound].answer;
    }

    function latestTimestamp() external view returns (uint256) {
        return rounds[latestRound].updatedAt;
    }

    // ---- test setters ------------------------------------------------------------------------

    /// Start the next round with `answer`, stamped with the current block timestamp.
    function setAnswer(int256 answer) external {
        uint80 roundId = latestRound + 1;
        rounds[roundId] = Round(answer, block.timestamp, block.timestamp, roundId);
        latestRound = roundId;
        emit NewRound(roundId, msg.sender, block.timestamp);
        emit AnswerUpdated(answer, roundId, block.timestamp);
    }

    /// Write round `roundId` verbatim and make it the latest. Emits nothing.
    function setRoundData(uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
        external
    {
        rounds[roundId] = Round(answer, startedAt, updatedAt, answeredInRound);
        latestRound = roundId;
    }

    /// Change only the latest round's `updatedAt` (make it look fresh or stale). Emits nothing.
    function setUpdatedAt(uint256 updatedAt) external {
        rounds[latestRound].updatedAt = updatedAt;
    }

    function setDecimals(uint8 newDecimals) external {
        decimals = newDecimals;
    }

    function setDescription(string calldata newDescription) external {
        description = newDescription;
    }
}
