/**
 * vllm.grpc.engine.VllmEngine (grpc.md): the reference's engine.proto, embedded as text
 * so the compiled binary needs no file. Field numbers are wire format.
 */
export const ENGINE_PROTO = `
syntax = "proto3";
package vllm.grpc.engine;
service VllmEngine {
  rpc Generate(GenerateRequest) returns (stream GenerateResponse);
  rpc Embed(EmbedRequest) returns (EmbedResponse);
  rpc HealthCheck(HealthCheckRequest) returns (HealthCheckResponse);
  rpc Abort(AbortRequest) returns (AbortResponse);
  rpc GetModelInfo(GetModelInfoRequest) returns (GetModelInfoResponse);
  rpc GetServerInfo(GetServerInfoRequest) returns (GetServerInfoResponse);
}
message SamplingParams {
  optional float temperature = 1;
  float top_p = 2;
  uint32 top_k = 3;
  float min_p = 4;
  float frequency_penalty = 5;
  float presence_penalty = 6;
  float repetition_penalty = 7;
  optional uint32 max_tokens = 8;
  uint32 min_tokens = 9;
  repeated string stop = 10;
  repeated uint32 stop_token_ids = 11;
  bool skip_special_tokens = 12;
  bool spaces_between_special_tokens = 13;
  bool ignore_eos = 14;
  uint32 n = 15;
  optional int32 logprobs = 22;
  optional int32 prompt_logprobs = 23;
  optional int32 seed = 24;
  bool include_stop_str_in_output = 25;
  map<int32, float> logit_bias = 26;
  optional int32 truncate_prompt_tokens = 27;
  oneof constraint {
    string json_schema = 16;
    string regex = 17;
    string grammar = 18;
    string structural_tag = 19;
    bool json_object = 20;
    ChoiceConstraint choice = 21;
  }
}
message ChoiceConstraint {
  repeated string choices = 1;
}
message TokenizedInput {
  string original_text = 1;
  repeated uint32 input_ids = 2;
}
message GenerateRequest {
  string request_id = 1;
  oneof input {
    TokenizedInput tokenized = 2;
    string text = 3;
  }
  SamplingParams sampling_params = 4;
  bool stream = 5;
}
message GenerateResponse {
  oneof response {
    GenerateStreamChunk chunk = 1;   
    GenerateComplete complete = 2;   
  }
}
message GenerateStreamChunk {
  repeated uint32 token_ids = 1;     
  uint32 prompt_tokens = 2;
  uint32 completion_tokens = 3;
  uint32 cached_tokens = 4;
}
message GenerateComplete {
  repeated uint32 output_ids = 1;    
  string finish_reason = 2;          
  uint32 prompt_tokens = 3;
  uint32 completion_tokens = 4;
  uint32 cached_tokens = 5;
}
message EmbedRequest {
  string request_id = 1;
  TokenizedInput tokenized = 2;
}
message EmbedResponse {
  repeated float embedding = 1;
  uint32 prompt_tokens = 2;
  uint32 embedding_dim = 3;
}
message HealthCheckRequest {}
message HealthCheckResponse {
  bool healthy = 1;
  string message = 2;
}
message AbortRequest {
  repeated string request_ids = 1;
}
message AbortResponse {
}
message GetModelInfoRequest {}
message GetModelInfoResponse {
  string model_path = 1;
  bool is_generation = 2;
  uint32 max_context_length = 3;
  uint32 vocab_size = 4;
  bool supports_vision = 5;
}
message GetServerInfoRequest {}
message GetServerInfoResponse {
  uint32 active_requests = 1;
  bool is_paused = 2;
  double last_receive_timestamp = 3;
  double uptime_seconds = 4;
  string server_type = 5;
}
`;
