DROP TABLE spent_sign_in_proofs;
