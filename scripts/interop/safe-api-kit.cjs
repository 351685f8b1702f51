#!/usr/bin/env node
// Steward's Safe Transaction Service compatible API, driven by the Safe ecosystem's own
// TypeScript clients: @safe-global/protocol-kit builds and signs, @safe-global/api-kit talks
// to Steward exactly as it talks to the Safe Transaction Service (txServiceUrl ending in /api).
//
// Run by services/steward/tests/safe_api.rs with NODE_PATH pointing at the npm packages that
// scripts/install-test-deps installs. Inputs (environment):
//   RPC_URL, TX_SERVICE_URL, CHAIN_ID, SAFE_ADDRESS, PROPOSER_KEY, CONFIRMER_KEY, TO, VALUE,
//   CONTRACTS (JSON: protocol-kit's ContractNetworkConfig for this chain).
// Steps: Safe info; propose (proposer signs typed data, EIP-712); check with protocol-kit
// that the fetched transaction is executable; list pending; confirm (confirmer signs with
// eth_sign); fetch by hash; list confirmations; wait until Steward has executed it.
// Prints progress on stderr and, as its last stdout line, a JSON summary.
'use strict';

const SafeApiKit = require('@safe-global/api-kit').default;
const Safe = require('@safe-global/protocol-kit').default;

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const say = (...args) => console.error('[interop]', ...args);

async function main() {
  const rpc = env('RPC_URL');
  const chainId = BigInt(env('CHAIN_ID'));
  const safeAddress = env('SAFE_ADDRESS');
  const contractNetworks = { [env('CHAIN_ID')]: JSON.parse(env('CONTRACTS')) };
  const apiKit = new SafeApiKit({ chainId, txServiceUrl: env('TX_SERVICE_URL') });

  const proposer = await Safe.init({ provider: rpc, signer: env('PROPOSER_KEY'), safeAddress, contractNetworks });
  const confirmer = await proposer.connect({ signer: env('CONFIRMER_KEY') });
  const proposerAddress = await proposer.getSafeProvider().getSignerAddress();

  const safeInfo = await apiKit.getSafeInfo(safeAddress);
  say('safe info', JSON.stringify(safeInfo));

  const tx = await proposer.createTransaction({
    transactions: [{ to: env('TO'), value: env('VALUE'), data: '0x' }],
  });
  const safeTxHash = await proposer.getTransactionHash(tx);
  const signed = await proposer.signTransaction(tx); // EIP-712 typed data (v 27/28)
  const senderSignature = signed.getSignature(proposerAddress).data;
  await apiKit.proposeTransaction({
    safeAddress,
    safeTransactionData: tx.data,
    safeTxHash,
    senderAddress: proposerAddress,
    senderSignature,
    origin: 'steward-interop',
  });
  say('proposed', safeTxHash);

  // protocol-kit turns the service's response into a SafeTransaction (fields and
  // confirmations) and simulates its execution, counting the confirmer's own approval: so
  // Steward's shapes must be what it expects. (Done before the second confirmation: with it,
  // Steward's relayer executes at once and the nonce is used.)
  const early = await apiKit.getTransaction(safeTxHash);
  const isValidTransaction = await confirmer.isValidTransaction(early);
  say('valid', isValidTransaction);
  // Pending (listed before the threshold is met: once it is, the relayer may execute at once).
  const pending = await apiKit.getPendingTransactions(safeAddress);
  say('pending', pending.count);

  const confirmation = await confirmer.signHash(safeTxHash); // eth_sign (v 31/32)
  const confirmed = await apiKit.confirmTransaction(safeTxHash, confirmation.data);
  say('confirmed', JSON.stringify(confirmed));

  const fetched = await apiKit.getTransaction(safeTxHash);
  const listed = await apiKit.getTransactionConfirmations(safeTxHash);

  // Steward's relayer executes it once the threshold is met.
  let executed = fetched;
  const deadline = Date.now() + 90_000;
  while (!executed.isExecuted) {
    if (Date.now() > deadline) throw new Error(`not executed within 90 s: ${JSON.stringify(executed)}`);
    await new Promise((r) => setTimeout(r, 500));
    executed = await apiKit.getTransaction(safeTxHash);
  }
  say('executed', executed.transactionHash);

  console.log(JSON.stringify({
    safeTxHash,
    safeInfo: { threshold: safeInfo.threshold, nonce: safeInfo.nonce, owners: safeInfo.owners, singleton: safeInfo.singleton },
    confirmed,
    pending: pending.results.map((t) => t.safeTxHash),
    fetched: {
      to: fetched.to,
      value: fetched.value,
      nonce: fetched.nonce,
      confirmations: fetched.confirmations.length,
      confirmationsRequired: fetched.confirmationsRequired,
      signatureTypes: fetched.confirmations.map((c) => c.signatureType),
    },
    confirmationsListed: listed.count,
    isValidTransaction,
    executed: { isExecuted: executed.isExecuted, transactionHash: executed.transactionHash, blockNumber: executed.blockNumber },
  }));
}

main().catch((e) => {
  console.error('[interop] FAILED:', e && e.stack ? e.stack : e);
  if (e && e.data) console.error('[interop] response:', JSON.stringify(e.data));
  process.exit(1);
});
