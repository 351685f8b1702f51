// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title TransferEmitter
/// @notice Emits ERC-20 `Transfer` events, many per call, for the watcher's throughput
/// benchmark (10,000 blocks x 20 logs) and for log-decoding tests. It holds no balances.
/// @dev Written for Steward's tests. `emitTransfers(n)` emits `n` events from the caller to
/// deterministic recipients `address(0x1000 + i)` with value `block.number * 1000 + i`, so each
/// log's content can be recomputed from its block number and position.
contract TransferEmitter {
    event Transfer(address indexed from, address indexed to, uint256 value);

    function emitTransfers(uint256 count) external {
        uint256 base = block.number * 1000;
        for (uint256 i = 0; i < count; ++i) {
            emit Transfer(msg.sender, address(uint160(0x1000 + i)), base + i);
        }
    }

    function emitTransfer(address from, address to, uint256 value) external {
        emit Transfer(from, to, value);
    }
}
