# Build the single vllm-sim binary with `deno compile`, ship it on distroless.
FROM denoland/deno:2.9.6 AS build
WORKDIR /src
COPY deno.json deno.lock ./
COPY main.ts ./
COPY lib ./lib
COPY routes ./routes
RUN deno install --frozen --entrypoint main.ts && deno task compile

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/dist/vllm-sim /vllm-sim
EXPOSE 8000
ENTRYPOINT ["/vllm-sim"]
CMD ["--model", "Qwen/Qwen2.5-1.5B-Instruct"]
