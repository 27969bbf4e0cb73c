"""The Huawei Cloud ECS (Nova-compatible) metadata API: client, signing, retry, classification."""
