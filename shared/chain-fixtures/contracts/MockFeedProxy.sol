// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// The aggregator calls the proxy forwards.
interface IFeedAggregator {
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
    function getRoundData(uint80 roundId) external view returns (uint80, int256, uint256, uint256, uint80);
    function latestAnswer() external view returns (int256);
    function decimals() external view returns (uint8);
    function description() external view returns (string memory);
    function version() external view returns (uint256);
}

/// @title MockFeedProxy
/// @notice Test double for a Chainlink price-feed proxy: `aggregator()` names the current
/// aggregator and the reads are forwarded to it. `setAggregator` switches it silently, with no
/// event, as real proxies swap aggregators without anything a log watcher would see; a watcher
/// has to re-read `aggregator()` to follow.
/// @dev Written for Steward's tests. Unlike a real proxy, round ids are passed through unchanged
/// (no phase id in the high bits). Starts with no aggregator: reads revert until one is set.
contract MockFeedProxy {
    address public aggregator;

    error NoAggregator();

    function setAggregator(address newAggregator) external {
        aggregator = newAggregator;
    }

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return _current().latestRoundData();
    }

    function getRoundData(uint80 roundId)
        external
        view
        returns (uint80, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return _current().getRoundData(roundId);
    }

    function latestAnswer() external view returns (int256) {
        return _current().latestAnswer();
    }

    function decimals() external view returns (uint8) {
        return _current().decimals();
    }

    function description() external view returns (string memory) {
        return _current().description();
    }

    function version() external view returns (uint256) {
        return _current().version();
    }

    function _current() private view returns (IFeedAggregator) {
        if (aggregator == address(0)) revert NoAggregator();
        return IFeedAggregator(aggregator);
    }
}
